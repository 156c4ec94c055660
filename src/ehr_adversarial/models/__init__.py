"""Mortality models (plain nn.Modules) and a registry that rebuilds them from a JSON-able config.

A model config is what a saved model carries beside its weights::

    {"architecture": "lstm_sun2018", "hyperparameters": {"hidden_size": 128, ...},
     "feature_set": "sun2018", "feature_names": [...], "static_names": [...],
     "n_hours": 48, "n_features": 18, "n_static": 8}

Every model takes the tensors it names in its `inputs` attribute, in that order,
from a tensor bundle (x, mask, delta: (B, 48, F); static: (B, S)) and returns
2 logits per record (no softmax: train with cross-entropy on the logits).

A config with `n_instances` K > 1 describes K instances of the architecture, trained alike from
different seeds, combined into one model by `InstanceEnsemble` (mean of the members' logits).

Gradients w.r.t. the inputs (the attack) need eval-mode logits; with cuDNN an RNN's
backward runs only in train mode, so use `ehr_adversarial.torch_utils.input_gradient_mode`
(re-exported by `ehr_adversarial.attack`), which keeps everything in eval mode except the LSTMs
(train mode, dropout 0: the same output).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from .dssm import DSSM
from .ehrdiff import EHRDiff
from .gpt import GPT
from .instances import InstanceEnsemble
from .kmimic import LatentGenerator, StaticVAE, TemporalVAE
from .lstm_sun2018 import LSTMSun2018

# Mortality models, then the synthetic-EHR generators (rebuilt the same way by TorchModelDataset).
MODEL_CLASSES: dict[str, type[nn.Module]] = {
    "lstm_sun2018": LSTMSun2018,
    "dssm": DSSM,
    "ehrdiff": EHRDiff,
    "gpt": GPT,
    "kmimic_static_vae": StaticVAE,
    "kmimic_temporal_vae": TemporalVAE,
    "kmimic_latent_generator": LatentGenerator,
}


def build_model(config: Mapping[str, Any]) -> nn.Module:
    """A freshly initialised model for `config` (see the module docstring); the config is kept on it."""
    architecture = config.get("architecture")
    if architecture not in MODEL_CLASSES:
        raise ValueError(
            f"unknown model architecture {architecture!r}; known: {', '.join(MODEL_CLASSES)}"
        )
    cls = MODEL_CLASSES[architecture]
    accepted = set(inspect.signature(cls).parameters)
    hyperparameters = dict(config.get("hyperparameters", {}))
    unknown = sorted(set(hyperparameters) - accepted)
    if unknown:
        raise ValueError(
            f"{architecture} does not take hyperparameter(s) {unknown}; "
            f"it accepts {sorted(accepted - {'n_features', 'n_static'})}"
        )
    # Shapes come from the data (config) unless the hyperparameters already fix them (generators).
    shape = {
        key: int(config[key])
        for key in ("n_features", "n_static")
        if key in accepted and key in config and key not in hyperparameters
    }
    n_instances = int(config.get("n_instances", 1))
    if n_instances < 1:
        raise ValueError(f"n_instances is {n_instances}; a model needs at least one instance")
    if n_instances == 1:
        model = cls(**shape, **hyperparameters)
    else:
        model = InstanceEnsemble([cls(**shape, **hyperparameters) for _ in range(n_instances)])
        for member in model.members:
            member.config = {**config, "n_instances": 1}
    model.config = dict(config)
    return model


def instances(model: nn.Module) -> list[nn.Module]:
    """The separately trained instances a model consists of (itself when it is a single instance)."""
    return list(model.members) if isinstance(model, InstanceEnsemble) else [model]


def model_inputs(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The tensors of `batch` that `model.forward` takes, in its order."""
    return tuple(batch[name] for name in model.inputs)


def check_model_matches_data(
    config: Mapping[str, Any],
    bundle: Mapping[str, np.ndarray],
    feature_spec: Mapping[str, Any] | None = None,
    data_name: str = "the data",
) -> None:
    """Fail clearly when a model's inputs (shape, feature set) are not those of a tensor bundle.

    `config` is a model's config (`model.config`); `bundle` a model_input dict
    (X: (N, hours, F), static: (N, S)); `feature_spec` the data's feature spec, when
    given, must list the same features in the same order as the model was trained on.
    """
    expected_series = (int(config["n_hours"]), int(config["n_features"]))
    expected_static = int(config.get("n_static", 0))
    x_shape = tuple(np.shape(bundle["X"]))
    got_static = int(np.shape(bundle["static"])[1]) if "static" in bundle else 0
    uses_static = "static" in MODEL_CLASSES[config["architecture"]].inputs
    if x_shape[1:] != expected_series or (uses_static and got_static != expected_static):
        raise ValueError(
            f"model {config.get('architecture')!r} on feature set {config.get('feature_set')!r} "
            f"expects X of shape (N, {expected_series[0]}, {expected_series[1]}) with "
            f"{expected_static} static features, but {data_name} has X of shape {x_shape} with "
            f"{got_static} static features; use the model_input of feature set "
            f"{config.get('feature_set')!r} or retrain the model on this one"
        )
    if feature_spec is not None and config.get("feature_names") is not None:
        trained, given = list(config["feature_names"]), list(feature_spec["feature_names"])
        if trained != given:
            raise ValueError(
                f"model was trained on feature set {config.get('feature_set')!r} {trained} but "
                f"{data_name} has feature set {feature_spec.get('feature_set')!r} {given} "
                f"(both of shape (N, {expected_series[0]}, {len(given)}) but in another order or "
                "with other features)"
            )


__all__ = ["DSSM", "InstanceEnsemble", "LSTMSun2018", "MODEL_CLASSES", "build_model", "check_model_matches_data",
           "instances", "model_inputs"]
