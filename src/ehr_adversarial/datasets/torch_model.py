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

import torch
from kedro.io.core import DatasetError, Version
from torch import nn

from ehr_adversarial.datasets.atomic_file import AtomicFileDataset
from ehr_adversarial.models import build_model


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
