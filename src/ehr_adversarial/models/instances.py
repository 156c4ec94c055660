"""Several instances of one model, trained alike from different seeds, as one model.

The logits are the mean of the members' logits, so the ensemble is a plain differentiable model: the
attack perturbs its input exactly as it does a single model's. Members keep their own weights
(`members.<k>.…` in the state dict), so each instance can also be taken out and attacked alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class InstanceEnsemble(nn.Module):
    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("an instance ensemble needs at least one member")
        inputs = {tuple(member.inputs) for member in members}
        if len(inputs) != 1:
            raise ValueError(f"the members of an instance ensemble take different inputs: {sorted(inputs)}")
        self.members = nn.ModuleList(members)
        self.inputs = inputs.pop()

    def forward(self, *args: torch.Tensor, **named: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(*args, **named) for member in self.members]).mean(dim=0)
