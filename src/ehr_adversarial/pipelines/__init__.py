"""Kedro wiring, one folder per stage: `nodes.py` (thin adapters over the library) and `pipeline.py`.

The graph of every source is assembled in `ehr_adversarial.pipeline_registry` from one static table;
no stage imports another. `bound` is the one helper the stages share.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial, update_wrapper
from typing import Any


def bound(func: Callable[..., Any], **arguments: Any) -> Callable[..., Any]:
    """`func` with keyword `arguments` fixed by the wiring (a feature set's name, a split), keeping the
    function's name and docstring so that kedro-viz shows the function, not `partial`."""
    return update_wrapper(partial(func, **arguments), func)
