"""A trained model behind one object: records in; P(death), the decision and (a torch model's) the record's
susceptible locations out, computed by exactly the code the study uses (the features stage's binning, imputation
and train-split scaling; the training stage's calibrated probability; the attack stage's L1 attack).

No Kedro and no HTTP here: `ehr_adversarial.serving.app` puts this behind FastAPI, and `kedro serve` loads the
model, its feature spec and metrics from the catalog.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ehr_adversarial.attack import logit_margin
from ehr_adversarial.attack.run import clinical_perturbations, run_attack
from ehr_adversarial.features.model_input import model_input_of_records
from ehr_adversarial.sources.physionet2012 import parse_physionet2012_records
from ehr_adversarial.sources.physionet2012.formats import RECORD_FILE
from ehr_adversarial.torch_utils import resolve_device
from ehr_adversarial.training.baselines import baseline_probability
from ehr_adversarial.training.selection import prediction_frame
from ehr_adversarial.training.stacking import predict_stack
from ehr_adversarial.training.torch_loop import (
    death_probability,
    limited_threads,
    predict_logits,
    to_tensors,
)

# At most this many records per request: a request is answered while the client waits.
MAX_RECORDS = 1000
# At most this many records per susceptibility request: the attack costs tens of forward passes per record.
MAX_ATTACKED_RECORDS = 64
# The attack's modes: the study's default, and the measurement-consistent attack (docs/attack.md).
ATTACK_MODES = {"all_cells": {}, "measured": {"observed_only": True, "forward_fill": True}}
# The descriptor row that names a PhysioNet 2012 record.
RECORD_ID_ROW = re.compile(rb"^00:00,RecordID,(\d+)\s*$", re.MULTILINE)


# P(death) per record of a model input bundle (X, mask, delta, static, record_id).
ProbabilityOf = Callable[[Mapping[str, np.ndarray]], np.ndarray]


def _unlabelled(bundle: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The bundle with a placeholder label: the study's prediction code takes labelled bundles; served records
    have no outcome, and no served number depends on it."""
    return {**bundle, "y": np.zeros(len(bundle["X"]), dtype=np.int64)}


def model_logits(model: nn.Module, bundle: Mapping[str, np.ndarray], device: torch.device) -> torch.Tensor:
    """Eval-mode logits of a torch model on the inputs of `bundle`."""
    tensors = to_tensors(_unlabelled({name: bundle[name] for name in ("X", "mask", "delta", "static")}), device)
    return predict_logits(model, tensors, int(model.config.get("batch_size", 256)))


def torch_probability(model: nn.Module, logits: torch.Tensor) -> np.ndarray:
    """P(death) from a torch model's logits, as its test predictions give it (prior shift removed, calibrated)."""
    return death_probability(logits, model.config["probability_shift"], model.config.get("calibration"))


def torch_model_probability(model: nn.Module, device: str = "auto") -> ProbabilityOf:
    """P(death) of a torch model (e.g. a member of the stack), as its test predictions give it."""
    torch_device = resolve_device(device)
    model = model.to(torch_device).eval()
    return lambda bundle: torch_probability(model, model_logits(model, bundle, torch_device))


def estimator_probability(estimator: Any, feature_spec: Mapping[str, Any]) -> ProbabilityOf:
    """P(death) of a summary-statistics baseline, as the training stage's `predict_estimator` computes it."""
    return lambda bundle: baseline_probability(estimator, bundle, feature_spec)


def stack_probability(stacker: Any, members: Mapping[str, ProbabilityOf]) -> ProbabilityOf:
    """P(death) of the stack from its members' probabilities, by the training stage's `predict_stack`."""
    def probability(bundle: Mapping[str, np.ndarray]) -> np.ndarray:
        frames = {name: prediction_frame(_unlabelled(bundle), member(bundle), "served")
                  for name, member in members.items()}
        return predict_stack(stacker, **frames)["y_prob"].to_numpy()
    return probability


@dataclass
class ModelService:
    """One trained model, its feature spec and what the study measured about it.

    `model` is a torch model (its predictions and its susceptible locations are served); a model without input
    gradients (a baseline, the stack) comes as `probability` instead, and only its predictions are served.

    `threshold` is the decision threshold the training stage chose on held-out predictions (never the test
    split); `attack` the source's attack settings; `ingestion` the source's ingestion settings (the valid range of
    each parameter; PhysioNet 2012: also the rules that turn a record file into measurements, so a served record
    file is read as the study reads set-a and set-b).
    """

    name: str
    model: nn.Module | None
    feature_spec: Mapping[str, Any]
    probability: ProbabilityOf | None = None
    threshold: float | None = None
    threshold_rule: str | None = None
    attack: Mapping[str, Any] | None = None
    ingestion: Mapping[str, Any] | None = None
    source: str = ""
    about: Mapping[str, Any] = field(default_factory=dict)
    device: str = "auto"
    seed: int = 0
    n_threads: int = 1

    def __post_init__(self) -> None:
        self._device = resolve_device(self.device)
        # One request computes at a time: torch modules switch train/eval modes for the attack's input gradients.
        self._lock = threading.Lock()
        if self.model is None:
            if self.probability is None:
                raise ValueError(f"model {self.name!r}: give a torch model or a probability function.")
            return
        config = self.model.config
        if config.get("feature_set") != self.feature_spec.get("feature_set"):
            raise ValueError(f"model {self.name!r} reads feature set {config.get('feature_set')!r} but the feature "
                             f"spec is {self.feature_spec.get('feature_set')!r}; load the spec of the model's run.")
        if [str(n) for n in config["feature_names"]] != list(self.feature_spec["feature_names"]):
            raise ValueError(f"model {self.name!r} and its feature spec name different features; they come from "
                             "different runs.")
        self.model = self.model.to(self._device).eval()
        self.probability = lambda bundle: self._probability(self._logits(bundle))

    # -- what the model is -------------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Name, architecture, inputs (features with units, statics), threshold and the study's test metrics."""
        spec = self.feature_spec
        return {
            "model": self.name,
            "source": self.source,
            "architecture": self.model.config.get("architecture") if self.model is not None else None,
            "feature_set": spec["feature_set"],
            "n_hours": int(spec["n_hours"]),
            "features": [{"name": name, "unit": spec.get("units", {}).get(name, ""),
                          "parameters": list(spec.get("sources", {}).get(name, [name]))}
                         for name in spec["feature_names"]],
            "static": {"numeric": list(spec.get("static_scaler", {})),
                       "categorical": {k: list(v) for k, v in spec.get("static_one_hot", {}).items()}},
            "threshold": self.threshold,
            "threshold_rule": self.threshold_rule,
            "class_boundary_p_death": self.class_boundary(),
            "accepts_physionet2012_files": self.source == "physionet2012",
            **dict(self.about),
        }

    def class_boundary(self) -> float | None:
        """P(death) at which a torch model's predicted class (the argmax of its class-weighted logits, what the
        attack flips) changes: equal logits, mapped through the prior shift and the calibration."""
        return float(torch_probability(self.model, torch.zeros(1, 2))[0]) if self.model is not None else None

    # -- records → model input ---------------------------------------------------------------------------------
    def model_input(self, timeseries: pd.DataFrame, static: pd.DataFrame) -> dict[str, np.ndarray]:
        """The model input of the records in `static` (ingestion contract: see `model_input_of_records`)."""
        if len(static) == 0:
            raise ValueError("the request holds no records.")
        if len(static) > MAX_RECORDS:
            raise ValueError(f"the request holds {len(static)} records; send at most {MAX_RECORDS} per request.")
        duplicated = static["record_id"].duplicated()
        if duplicated.any():
            raise ValueError(f"record_id {int(static.loc[duplicated, 'record_id'].iloc[0])} appears twice in the "
                             "request; give each record its own id.")
        for column, categories in self.feature_spec.get("static_one_hot", {}).items():
            if column in static:
                unknown = static[column].dropna().astype(str)
                unknown = unknown[~unknown.isin([str(c) for c in categories])]
                if len(unknown):
                    row = unknown.index[0]
                    raise ValueError(f"record {int(static.at[row, 'record_id'])}: static {column} is "
                                     f"{unknown.iloc[0]!r}; the model knows {list(categories)} (or leave it out).")
        read = self._parameters_read()
        known = read | set(self.valid_ranges())
        parameters = timeseries["parameter"].astype(str)
        unknown = sorted(set(parameters) - known)
        if unknown:
            raise ValueError(f"measurements name parameter(s) {unknown} that the {self.source or 'model'} data does "
                             f"not have; feature set {self.feature_spec['feature_set']!r} reads {sorted(read)}.")
        # Parameters of the source that this feature set does not read (e.g. a whole record sent to a model of
        # fewer features) are left out, as the features stage leaves them out.
        timeseries = timeseries[parameters.isin(read).to_numpy()]
        self._check_ranges(timeseries)
        return model_input_of_records(timeseries, static, dict(self.feature_spec))

    def _parameters_read(self) -> set[str]:
        return {p for sources in self.feature_spec["sources"].values() for p in sources}

    def valid_ranges(self) -> dict[str, tuple[float, bool, float, bool]]:
        """parameter → (low, low included, high, high included): the values ingestion accepts (PhysioNet 2012:
        `ranges`, both ends included; MIMIC-III: each feature's `valid`, above / below / at_most, in the unit the
        features stage reads)."""
        ingestion = self.ingestion or {}
        if "ranges" in ingestion:
            return {p: (float(low), True, float(high), True) for p, (low, high) in ingestion["ranges"].items()}
        ranges = {}
        for parameter, feature in (ingestion.get("features") or {}).items():
            valid = feature.get("valid") or {}
            high = (float(valid["at_most"]), True) if "at_most" in valid else (float(valid.get("below", np.inf)), False)
            ranges[parameter] = (float(valid.get("above", -np.inf)), False, *high)
        return ranges

    def _check_ranges(self, timeseries: pd.DataFrame) -> None:
        """Values outside the range ingestion accepts are an error: the study never saw such a value (ingestion
        drops it), and it is most often a unit mix-up."""
        ranges = self.valid_ranges()
        if not ranges or timeseries.empty:
            return
        bounds = pd.DataFrame([ranges.get(p, (-np.inf, True, np.inf, True)) for p in timeseries["parameter"]],
                              columns=["low", "low_in", "high", "high_in"], index=timeseries.index)
        value = timeseries["value"]
        below = np.where(bounds["low_in"], value < bounds["low"], value <= bounds["low"])
        above = np.where(bounds["high_in"], value > bounds["high"], value >= bounds["high"])
        outside = below | above
        if outside.any():
            row, bound = timeseries[outside].iloc[0], bounds[outside].iloc[0]
            interval = (f"{'[' if bound['low_in'] else '('}{bound['low']:g}, {bound['high']:g}"
                        f"{']' if bound['high_in'] else ')'}")
            raise ValueError(f"record {int(row['record_id'])}: {row['parameter']} = {row['value']:g} at minute "
                             f"{int(row['minutes'])} is outside {interval}, the range ingestion accepts "
                             f"({int(outside.sum())} value(s) outside); check its unit ({self._unit_of(row['parameter'])}).")

    def _unit_of(self, parameter: str) -> str:
        for name, sources in self.feature_spec["sources"].items():
            if parameter in sources:
                return self.feature_spec.get("units", {}).get(name, "") or "no unit"
        return "no unit"

    def physionet2012_records(self, files: Mapping[str | None, bytes]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """PhysioNet 2012 record files (name → bytes) → (timeseries, static, rejected rows) by ingestion's rules;
        only measurements the feature set reads are kept (a record file holds every parameter). A file without a
        `<RecordID>.txt` name is named after its RecordID row."""
        if self.source != "physionet2012" or self.ingestion is None:
            raise ValueError(f"model {self.name!r} was trained on {self.source or 'another source'}; it takes "
                             "records as JSON measurements, not PhysioNet 2012 record files.")
        named = {}
        for name, data in files.items():
            if name is None or not RECORD_FILE.search(name):
                found = RECORD_ID_ROW.search(data)
                if found is None:
                    raise ValueError(f"{name or 'the record file'}: no `00:00,RecordID,<id>` row; add it, or name "
                                     "the file <RecordID>.txt.")
                name = f"{int(found.group(1))}.txt"
            named[name] = data
        timeseries, static, rejected = parse_physionet2012_records(named, dict(self.ingestion))
        static = static.replace({"icu_type": {"nan": np.nan}})
        return timeseries, static, rejected

    # -- predictions -------------------------------------------------------------------------------------------
    def _logits(self, bundle: Mapping[str, np.ndarray]) -> torch.Tensor:
        return model_logits(self.model, bundle, self._device)

    def _probability(self, logits: torch.Tensor) -> np.ndarray:
        return torch_probability(self.model, logits)

    def predict(self, timeseries: pd.DataFrame, static: pd.DataFrame) -> pd.DataFrame:
        """record_id, p_death (as the study's test predictions), high_risk (p_death ≥ the threshold; None without
        one)."""
        bundle = self.model_input(timeseries, static)
        with self._lock, limited_threads(self.n_threads):
            prob = np.asarray(self.probability(bundle), dtype=float)
        return pd.DataFrame({
            "record_id": bundle["record_id"].astype(np.int64),
            "p_death": prob.astype(float),
            "high_risk": prob >= self.threshold if self.threshold is not None else [None] * len(prob),
        })

    def susceptible_locations(self, timeseries: pd.DataFrame, static: pd.DataFrame,
                              mode: str = "all_cells") -> list[dict[str, Any]]:
        """Per record: the model's predicted class (the argmax of its logits: P(death) above `class_boundary()`),
        the smallest L1 change the study's attack finds (its settings) that flips it, P(death) after the change, and
        every changed cell in clinical units, largest change first, and whether it was measured or imputed.

        `mode`: `all_cells` (the study's default attack: any cell, measured or imputed) or `measured` (the
        measurement-consistent attack: only measured values change, and each change moves the hours forward-filled
        from it)."""
        if self.model is None:
            raise ValueError(f"model {self.name!r} has no input gradients to attack (the attack needs one torch "
                             "model); serve a torch model for susceptible locations, e.g. `kedro serve --model dssm`.")
        if self.attack is None:
            raise ValueError(f"no attack settings were given for model {self.name!r}.")
        if mode not in ATTACK_MODES:
            raise ValueError(f"mode is {mode!r}; use {' or '.join(ATTACK_MODES)}.")
        attack = {**self.attack, **ATTACK_MODES[mode]}
        if len(static) > MAX_ATTACKED_RECORDS:
            raise ValueError(f"the request holds {len(static)} records; the attack takes at most "
                             f"{MAX_ATTACKED_RECORDS} per request.")
        bundle = self.model_input(timeseries, static)
        with self._lock, limited_threads(self.n_threads):
            logits = self._logits(bundle)
            # The model's own decision is the label the attack moves away from (a served record has no outcome).
            decided = logits.argmax(dim=1)
            bundle["y"] = decided.cpu().numpy().astype(np.int64)
            margin = logit_margin(logits, decided).cpu().numpy()
            rows = np.flatnonzero(margin > 0)  # equal logits: no decision to flip
            selection = pd.DataFrame({"row": rows, "record_id": bundle["record_id"][rows],
                                      "label": bundle["y"][rows], "clean_margin": margin[rows]})
            records, deltas = pd.DataFrame({"record_id": [], "success": [], "l1_best": []}), None
            if len(rows):
                records, deltas, _ = run_attack(self.model, bundle, selection, dict(self.feature_spec), attack,
                                                self.seed, str(self._device))
                perturbed = {name: bundle[name][rows] for name in ("X", "mask", "delta", "static")}
                perturbed["X"] = perturbed["X"] + deltas["delta_best"]
                records["p_death_after"] = self._probability(self._logits(perturbed))
        cells = (clinical_perturbations(records, deltas, bundle, dict(self.feature_spec)) if deltas is not None
                 else pd.DataFrame({"record_id": []}))
        prob = self._probability(logits)
        attacked = records.set_index("record_id")
        feature_index = {name: f for f, name in enumerate(self.feature_spec["feature_names"])}
        answers = []
        for i, record_id in enumerate(bundle["record_id"].astype(np.int64).tolist()):
            answer: dict[str, Any] = {"record_id": record_id, "p_death": float(prob[i]),
                                      "predicted_class": "death" if bundle["y"][i] == 1 else "survival"}
            if record_id not in attacked.index:
                answers.append({**answer, "flipped": False, "l1": None, "p_death_after": None, "cells": [],
                                "note": "the model's two logits are equal: there is no decision to flip"})
                continue
            row = attacked.loc[record_id]
            measured = np.asarray(bundle["mask"][i], dtype=bool)
            mine = cells[cells["record_id"] == record_id]
            mine = mine.iloc[np.argsort(-np.abs(mine["delta_scaled"].to_numpy()), kind="stable")]
            answers.append({
                **answer,
                "flipped": bool(row["success"]),
                "l1": float(row["l1_best"]) if row["success"] else None,
                "p_death_after": float(row["p_death_after"]) if row["success"] else None,
                "cells": [{"feature": str(c.feature), "hour": int(c.hour), "unit": str(c.unit),
                           "original": float(c.original), "perturbed": float(c.perturbed), "change": float(c.change),
                           "measured": bool(measured[int(c.hour), feature_index[str(c.feature)]]),
                           "description": str(c.description)} for c in mine.itertuples(index=False)],
            })
        return answers
