"""Device selection and seeding shared by every torch node."""

from __future__ import annotations

import random

import numpy as np
import torch


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` → CUDA when available, else CPU; anything else is passed to torch.device.

    Asking for CUDA on a machine without it is an error, not a silent CPU run.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"params:device is {device!r} but torch sees no CUDA device; "
            "set device: auto or cpu in conf/<env>/parameters.yml."
        )
    return resolved


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; returns a CPU generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
