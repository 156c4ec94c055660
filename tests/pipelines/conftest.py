"""Fixtures and helpers shared by the pipeline tests: bundles that follow the features contract, a
small trained LSTM and the attack settings the tests use.

Test modules import the helpers from here (`from tests.pipelines.conftest import ...`), never from
each other."""

from __future__ import annotations

import numpy as np
import pytest
import torch

N_HOURS = 48

# Short attack settings for the small synthetic models.
ATTACK = {
    "n_records": 40, "if_fewer": "all", "class_balanced": True,
    "lambdas": {"low": 5e-4, "high": 1.5e-2, "count": 9},
    "lr": 0.05, "kappa": 0.0, "max_iterations": 100, "patience": 5, "search": "bisect",
    "observed_only": False, "stall_tol": 1e-7, "chunk_size": 16,
}
FIT = {"batch_size": 64, "max_epochs": 25, "patience": 25, "monitor": "loss", "class_weight": "balanced",
       "amp": False, "optimizer": {"lr": 0.01, "betas": [0.9, 0.999], "weight_decay": 0.0}, "grad_clip": 5.0}


def synthetic_bundle(n: int, n_features: int, seed: int, start_id: int, n_static: int = 3) -> dict:
    """A model_input bundle as the features pipeline writes it; deaths raise feature 0 on day 2."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.25).astype(np.int64)
    y[:2] = [0, 1]  # both classes, whatever the seed
    x = rng.random((n, N_HOURS, n_features)) * 0.6
    x[:, 24:, 0] += 0.3 * y[:, None] * rng.random((n, 1))
    mask = rng.random((n, N_HOURS, n_features)) < 0.4
    hours = np.arange(N_HOURS)[None, :, None]
    last = np.maximum.accumulate(np.where(mask, hours, -1), axis=1)
    delta = np.where(last >= 0, hours - last, N_HOURS) / N_HOURS
    return {"X": x.astype(np.float32), "mask": mask, "delta": delta.astype(np.float32),
            "static": rng.random((n, n_static)).astype(np.float32), "y": y,
            "record_id": np.arange(start_id, start_id + n, dtype=np.int64),
            "group": np.array(["a"] * n)}


def synthetic_spec(feature_set: str, n_features: int, n_static: int = 3) -> dict:
    return {"feature_set": feature_set, "feature_names": [f"f{i}" for i in range(n_features)],
            "static_names": [f"s{i}" for i in range(n_static)], "n_hours": N_HOURS}


def attack_spec(feature_set: str, n_features: int) -> dict:
    """synthetic_spec with the units and scaler that the attack's clinical-unit outputs need."""
    spec = synthetic_spec(feature_set, n_features)
    spec["units"] = {name: "mmol/L" for name in spec["feature_names"]}
    spec["scaler"] = {name: {"p05": 100.0, "p95": 150.0, "median": 125.0} for name in spec["feature_names"]}
    return spec


@pytest.fixture(scope="session")
def trained():
    """A small LSTM trained on synthetic sun2018 bundles (deaths raise feature 0 on day 2), its test
    bundle and spec. Shared by the attack and reporting tests: never change what it holds."""
    from ehr_adversarial.models import build_model
    from ehr_adversarial.training.torch_loop import fit, to_tensors

    torch.manual_seed(0)
    train, test = synthetic_bundle(300, 4, seed=1, start_id=0), synthetic_bundle(120, 4, seed=2, start_id=1000)
    spec = attack_spec("sun2018", 4)
    config = {"architecture": "lstm_sun2018", "hyperparameters": {"hidden_size": 16, "fc_size": 8, "dropout": 0.2},
              "feature_set": "sun2018", "feature_names": spec["feature_names"], "static_names": spec["static_names"],
              "n_hours": 48, "n_features": 4, "n_static": 3}
    device = torch.device("cpu")
    model, _ = fit(build_model(config), to_tensors(train, device), to_tensors(train, device), FIT,
                   torch.Generator().manual_seed(0))
    return model, test, spec
