"""Per-feature summaries of an hourly series, taken inside a model so that gradients reach every hour, and of
when each feature was measured (from the mask and delta channels, which the attack leaves as they are)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

# name → (batch, hours, features) → (batch, features)
SUMMARIES = {
    "mean": lambda x: x.mean(dim=1),
    "min": lambda x: x.amin(dim=1),
    "max": lambda x: x.amax(dim=1),
    "last": lambda x: x[:, -1],
    # mean absolute deviation, not the standard deviation: a constant series (a feature never measured) would
    # give the square root's infinite gradient at 0
    "mad": lambda x: (x - x.mean(dim=1, keepdim=True)).abs().mean(dim=1),
    "first": lambda x: x[:, 0],
}


# name → (the channel it reads, (batch, hours, features) → (batch, features)); delta is hours since the latest
# measurement / hours (1 before the first), so its last hour is how long ago the feature was last measured
MEASUREMENT_SUMMARIES = {
    "measured_share": ("mask", lambda mask: mask.mean(dim=1)),
    "hours_since_last": ("delta", lambda delta: delta[:, -1]),
}


def check_summaries(names: Sequence[str], known: Mapping[str, object] = SUMMARIES,
                    setting: str = "input_summary") -> tuple[str, ...]:
    """`names` as a tuple, or a ValueError that names the setting and lists the summaries there are."""
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"{setting} {unknown} unknown; use any of {', '.join(known)}")
    return tuple(names)


def hourly_summary(x: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
    """(batch, hours, features) → (batch, len(names) · features): each feature's summaries over the hours, in the
    order of `names` (e.g. mean and last value). A recurrent read-out has to learn these from 48 steps; handed over
    directly they give the classifier the wide path that a GBM on per-record summaries has (docs/models.md, "The
    LSTM on its own inputs")."""
    return torch.cat([SUMMARIES[name](x) for name in names], dim=-1)


def summarise_measurements(channels: Mapping[str, torch.Tensor], names: Sequence[str]) -> torch.Tensor:
    """(batch, len(names) · features): per feature, the share of hours it was measured (`measured_share`, from the
    mask) and how long before the window's end it was last measured (`hours_since_last`, from delta), in the order
    of `names`. The GBM on summaries gets the same two columns (count, hours since the last measurement)."""
    return torch.cat([MEASUREMENT_SUMMARIES[name][1](channels[MEASUREMENT_SUMMARIES[name][0]].float())
                      for name in names], dim=-1)
