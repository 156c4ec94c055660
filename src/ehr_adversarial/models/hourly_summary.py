"""Per-feature summaries of an hourly series, taken inside a model so that gradients reach every hour."""

from __future__ import annotations

from collections.abc import Sequence

import torch

# name → (batch, hours, features) → (batch, features)
SUMMARIES = {
    "mean": lambda x: x.mean(dim=1),
    "min": lambda x: x.amin(dim=1),
    "max": lambda x: x.amax(dim=1),
    "last": lambda x: x[:, -1],
}


def check_summaries(names: Sequence[str]) -> tuple[str, ...]:
    """`names` as a tuple, or a ValueError that lists the summaries there are."""
    unknown = [name for name in names if name not in SUMMARIES]
    if unknown:
        raise ValueError(f"input_summary {unknown} unknown; use any of {', '.join(SUMMARIES)}")
    return tuple(names)


def hourly_summary(x: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
    """(batch, hours, features) → (batch, len(names) · features): each feature's summaries over the hours, in the
    order of `names` (e.g. mean and last value). A recurrent read-out has to learn these from 48 steps; handed over
    directly they give the classifier the wide path that a GBM on per-record summaries has (docs/models.md, "The
    LSTM on its own inputs")."""
    return torch.cat([SUMMARIES[name](x) for name in names], dim=-1)
