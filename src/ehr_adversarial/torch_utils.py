"""Device selection, seeding and input-gradient mode shared by every torch node (training and attack)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn


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


@contextmanager
def input_gradient_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Deterministic logits with gradients w.r.t. the input only; restores the model afterwards.

    Everything is in eval mode (dropout off, batch norm on running statistics), except recurrent
    layers: cuDNN computes an RNN backward only in training mode, so RNN modules are put in
    train mode with their inter-layer dropout set to 0 (identical output to eval mode).
    Parameters stop requiring gradients, which spares the weight gradients in backward.
    """
    training = {module: module.training for module in model.modules()}
    requires_grad = {param: param.requires_grad for param in model.parameters()}
    rnn_dropout = {}
    model.eval()
    for module in model.modules():
        if isinstance(module, nn.RNNBase):
            rnn_dropout[module] = module.dropout
            module.dropout = 0.0
            module.train()
    for param in requires_grad:
        param.requires_grad_(False)
    try:
        yield model
    finally:
        for module, was_training in training.items():
            module.training = was_training
        for module, dropout in rnn_dropout.items():
            module.dropout = dropout
        for param, flag in requires_grad.items():
            param.requires_grad_(flag)
