"""Kedro wiring, one folder per stage: `nodes.py` (thin adapters over the library) and `pipeline.py`.

The graph of every source is assembled in `ehr_adversarial.pipeline_registry` from one static table;
no stage imports another. `bound` and `seeded` are the helpers the stages share.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial, update_wrapper, wraps
from typing import Any


def bound(func: Callable[..., Any], **arguments: Any) -> Callable[..., Any]:
    """`func` with keyword `arguments` fixed by the wiring (a feature set's name, a split), keeping the
    function's name and docstring so that kedro-viz shows the function, not `partial`."""
    return update_wrapper(partial(func, **arguments), func)


def seeded(func: Callable[..., Any], offset: int) -> Callable[..., Any]:
    """`func` with its `seed` argument raised by `offset`: the same node run again from another seed (a
    generator's repeat run) while the run has one `params:seed`. Offset 0 returns `func` itself."""
    if offset == 0:
        return func
    signature = inspect.signature(func)
    if "seed" not in signature.parameters:
        raise ValueError(f"{getattr(func, '__name__', func)!r} takes no `seed` argument to offset")

    @wraps(func)
    def with_offset(*args: Any, **kwargs: Any) -> Any:
        arguments = signature.bind(*args, **kwargs)
        arguments.arguments["seed"] = int(arguments.arguments["seed"]) + offset
        return func(*arguments.args, **arguments.kwargs)

    return with_offset
