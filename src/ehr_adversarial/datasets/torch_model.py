"""TorchModelDataset: a versioned torch model saved as its weights plus the config that rebuilds it.

The file holds ``{"config": <JSON-able dict>, "state_dict": <tensors>}``. Loading uses
``torch.load(weights_only=True)``, which unpickles only tensors and plain containers,
so a model file cannot run code; the module is rebuilt with
`ehr_adversarial.models.build_model(config)`. Saves go to a temporary file that is
renamed into place, so an interrupted run never leaves a half-written model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from kedro.io.core import DatasetError, Version
from torch import nn

from ehr_adversarial.datasets.atomic_file import AtomicFileDataset
from ehr_adversarial.models import MODEL_CLASSES, build_model


class TorchModelDataset(AtomicFileDataset[nn.Module, nn.Module]):
    """Saves an nn.Module that carries a `config` dict (as `build_model` makes them); loads it in eval mode.

    Example catalog entry::

        "{source}.{model}.model":
          type: ehr_adversarial.datasets.torch_model.TorchModelDataset
          filepath: data/06_models/{source}/{model}.pt
          versioned: true
    """

    def __init__(
        self,
        *,
        filepath: str | os.PathLike,
        map_location: str = "cpu",
        version: Version | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._map_location = map_location
        super().__init__(filepath=filepath, version=version, credentials=credentials, fs_args=fs_args, metadata=metadata)

    def load(self) -> nn.Module:
        load_path = self._load_path()
        with self._fs.open(load_path, "rb") as file:
            payload = torch.load(file, map_location=self._map_location, weights_only=True)
        if not isinstance(payload, Mapping) or set(payload) != {"config", "state_dict"}:
            raise DatasetError(
                f"{load_path} is not a TorchModelDataset file: expected keys config and state_dict"
            )
        model = build_model(payload["config"])
        try:
            model.load_state_dict(payload["state_dict"])
        except RuntimeError as exc:
            raise DatasetError(
                f"{load_path}: the weights do not fit the module its config describes: {exc}"
            ) from exc
        return model.eval()

    def save(self, data: nn.Module) -> None:
        config = getattr(data, "config", None)
        if not isinstance(config, Mapping):
            raise DatasetError(
                f"{type(data).__name__} has no `config` dict; build it with "
                "ehr_adversarial.models.build_model so that it can be rebuilt on load"
            )
        try:
            config = json.loads(json.dumps(config))
        except TypeError as exc:
            raise DatasetError(f"the model config is not JSON-able: {exc}") from exc
        payload = {
            "config": config,
            "state_dict": {k: v.detach().cpu() for k, v in data.state_dict().items()},
        }
        self._save_atomically(lambda file: torch.save(payload, file))


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
