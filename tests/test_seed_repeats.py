"""Synthetic headlines over generator seeds (synthetic_evaluation.repeats) and the seed offset of a repeat
run's nodes (pipelines.seeded), on small fixtures whose answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ehr_adversarial.pipelines import seeded
from ehr_adversarial.synthetic_evaluation.repeats import pooled_tstr_trtr, seed_summary, spread
from ehr_adversarial.synthetic_evaluation.utility import tstr_trtr


def _scores(n: int = 400, signal: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 5 == 0).astype(int)
    return y, y * signal + rng.normal(size=n)


def test_one_run_gives_the_test_bootstrap_interval_of_tstr_trtr():
    y, trtr = _scores(seed=1)
    _, tstr = _scores(signal=0.7, seed=2)
    pooled = pooled_tstr_trtr(y, trtr, [tstr], n_boot=300, seed=7)
    single = tstr_trtr(y, trtr, tstr, n_boot=300, seed=7)
    for metric in ("auroc", "auprc"):
        assert pooled[metric]["tstr"]["mean"] == pytest.approx(single["tstr"][metric]["value"])
        assert pooled[metric]["tstr"]["sd"] == 0.0 and pooled[metric]["tstr"]["n"] == 1
        assert pooled[metric]["tstr"]["ci_low"] == pytest.approx(single["tstr"][metric]["ci_low"])
        assert pooled[metric]["ratio"]["ci_high"] == pytest.approx(single["tstr_over_trtr"][metric]["ci_high"])
        assert pooled[metric]["trtr"]["value"] == pytest.approx(single["trtr"][metric]["value"])


def test_runs_that_disagree_widen_the_interval_beyond_any_one_runs_bootstrap():
    y, trtr = _scores(seed=1)
    weak, strong = _scores(signal=0.3, seed=2)[1], _scores(signal=1.5, seed=3)[1]
    pooled = pooled_tstr_trtr(y, trtr, [weak, strong], n_boot=400, seed=0)["auroc"]["tstr"]
    alone = [tstr_trtr(y, trtr, s, n_boot=400, seed=0)["tstr"]["auroc"] for s in (weak, strong)]
    assert pooled["n"] == 2 and pooled["per_run"] == pytest.approx([a["value"] for a in alone])
    assert pooled["min"] < pooled["mean"] < pooled["max"] and pooled["sd"] > 0.05
    # the mixture reaches both runs' bootstrap distributions
    assert pooled["ci_low"] == pytest.approx(alone[0]["ci_low"], abs=0.03)
    assert pooled["ci_high"] == pytest.approx(alone[1]["ci_high"], abs=0.03)
    assert pooled["ci_high"] - pooled["ci_low"] > max(a["ci_high"] - a["ci_low"] for a in alone) + 0.1


def test_predictions_of_other_records_are_refused():
    y, trtr = _scores()
    with pytest.raises(ValueError, match="differ in length"):
        pooled_tstr_trtr(y, trtr, [trtr[:-1]])
    with pytest.raises(ValueError, match="at least one generator run"):
        pooled_tstr_trtr(y, trtr, [])


def test_spread_and_the_summary_table():
    assert spread([1.0, 2.0, 3.0]) == {"mean": 2.0, "sd": 1.0, "min": 1.0, "max": 3.0, "n": 3}
    assert spread([0.4]) == {"mean": 0.4, "sd": 0.0, "min": 0.4, "max": 0.4, "n": 1}
    assert spread([None, float("nan")])["n"] == 0
    table = pd.DataFrame({"generator": ["g", "g_rep1", "h"], "mia_auc": [0.5, 0.6, 0.7]})
    runs = {"g": ("g", 0), "g_rep1": ("g", 1), "h": ("h", 0)}
    summary = seed_summary(table, runs, {"mia_auc": "MIA AUC", "absent": "not in the table"}, {})
    assert summary[["generator", "metric", "n_runs"]].values.tolist() == [["g", "MIA AUC", 2], ["h", "MIA AUC", 1]]
    assert summary["mean"].tolist() == pytest.approx([0.55, 0.7]) and summary["ci_low"].isna().all()


def test_seeded_offsets_the_seed_argument_only():
    def train(data: list, settings: dict, seed: int, device: str) -> tuple:
        return data, settings, seed, device

    assert seeded(train, 0) is train
    repeat = seeded(train, 2)
    assert repeat([1], {"a": 1}, 2012, "cpu") == ([1], {"a": 1}, 2014, "cpu")
    assert repeat([1], {}, seed=5, device="cpu") == ([1], {}, 7, "cpu")
    assert repeat.__name__ == "train" and repeat.__wrapped__ is train
    with pytest.raises(ValueError, match="takes no `seed` argument"):
        seeded(lambda data: data, 1)
