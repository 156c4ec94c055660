"""Typed parameter checking: every environment's merged parameters pass; a typo, a wrong type or a value out of
range anywhere fails before a run, naming the full parameter path, the value and what is allowed."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import pytest
from click import Command, Context, Option

from ehr_adversarial.config import ProjectConfigLoader
from ehr_adversarial.parameters import check_parameters
from ehr_adversarial.settings import CONFIG_LOADER_ARGS

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")

CONF = Path(__file__).resolve().parents[1] / "conf"
pytestmark = pytest.mark.filterwarnings("ignore:.*register_new_resolver.*:UserWarning")
ENVS = ("base", *sorted(path.name for path in CONF.iterdir() if path.is_dir() and path.name != "base"))


def _parameters(env: str, runtime_params: dict | None = None) -> dict:
    return ProjectConfigLoader(conf_source=str(CONF), env=env, runtime_params=runtime_params,
                               **CONFIG_LOADER_ARGS)["parameters"]


def _cli_params(*items: str) -> dict:
    """What `kedro run --params "a.b=1,c=x"` hands the session: Kedro's own parser."""
    from kedro.framework.cli.utils import _split_params

    option = Option(["--params"])
    return _split_params(Context(Command("run", params=[option])), option, ",".join(items))


@pytest.fixture(scope="module")
def base() -> dict:
    return _parameters("local")


def _error(params: dict) -> str:
    with pytest.raises(ValueError) as raised:
        check_parameters(params)
    return str(raised.value)


@pytest.mark.parametrize("env", ENVS)
def test_every_environment_passes(env):
    params = _parameters(env)
    assert {"seed", "device", "attack", "training", "ingestion"} <= set(params)
    check_parameters(params)


def test_the_ensemble_environment_trains_six_instances_of_each_attacked_model_and_changes_nothing_else(base):
    ensemble = _parameters("ensemble")
    models = ensemble["training"]["physionet2012"]
    assert {name: models[name]["n_instances"] for name in ("lstm_sun2018", "lstm_pooled", "dssm")} == {
        "lstm_sun2018": 6, "lstm_pooled": 6, "dssm": 6}
    for name in ("lstm_sun2018", "lstm_pooled", "dssm"):
        models[name]["n_instances"] = base["training"]["physionet2012"][name]["n_instances"]
    assert ensemble == base


def test_every_stage_and_source_is_checked(base):
    from ehr_adversarial.parameters import STAGE_MODELS

    assert set(STAGE_MODELS) == set(base) - {"seed", "device"}
    for stage, models in STAGE_MODELS.items():
        assert set(base[stage]) == set(models), stage


def test_typo_is_an_unknown_setting_with_the_allowed_ones(base):
    params = copy.deepcopy(base)
    params["attack"]["physionet2012"]["n_recrods"] = 5
    message = _error(params)
    assert message.startswith("invalid parameters (conf/base/parameters_<stage>.yml, conf/<env>/, --params):\n")
    assert re.search(r"^  attack\.physionet2012\.n_recrods: unknown setting \(allowed: n_records, if_fewer, "
                     r"class_balanced, lambdas, lr, ", message, re.M), message


def test_typo_through_kedro_params_fails(base):
    params = _parameters("local", _cli_params("attack.physionet2012.n_recrods=5"))
    assert "attack.physionet2012.n_recrods: unknown setting" in _error(params)


def test_n_records_abc_names_path_and_value():
    params = _parameters("local", _cli_params("attack.physionet2012.n_records=abc"))
    message = _error(params)
    line = next(line for line in message.splitlines() if "n_records" in line)
    assert line.startswith("  attack.physionet2012.n_records: ")
    assert "(got 'abc'; allowed: all)" in line
    assert "integer" in line


def test_valid_kedro_params_pass():
    cli = _cli_params("attack.physionet2012.n_records=5", "attack.physionet2012.lr=0.5", "seed=7",
                      "device=cpu", "attack.physionet2012.search=bisect",
                      "synthesis.physionet2012.ehrdiff.n_samples=100", "training.physionet2012.lstm_sun2018.amp=false",
                      "features.mimic3.splits.validation_fraction=0.25", "attack.mimic3.n_records=all")
    assert cli["attack"]["physionet2012"]["n_records"] == 5  # Kedro parses "5" to an int
    params = _parameters("local", cli)
    assert params["attack"]["physionet2012"]["n_records"] == 5 and params["seed"] == 7
    check_parameters(params)


@pytest.mark.parametrize(("change", "path", "fragment"), [
    (lambda p: p["training"]["physionet2012"]["lstm_sun2018"]["optimizer"].update(lr=-0.001),
     "training.physionet2012.lstm_sun2018.optimizer.lr", "greater than 0 (got -0.001)"),
    (lambda p: p["features"]["physionet2012"]["splits"].update(validation_fraction=1.5),
     "features.physionet2012.splits.validation_fraction", "less than 1 (got 1.5)"),
    (lambda p: p["features"]["physionet2012"]["splits"].update(train_groups=["a", "b"], test_groups=[]),
     "features.physionet2012.splits", "no test split: test_groups is empty and test_fraction is 0"),
    (lambda p: p["features"]["physionet2012"]["splits"].update(train_groups=["a", "b"], test_groups=["b"]),
     "features.physionet2012.splits", "group(s) ['b'] are in both train_groups and test_groups"),
    (lambda p: p["attack"]["mimic3"].update(search="binary"),
     "attack.mimic3.search", "(got 'binary'; allowed: continuation, bisect, descending, full)"),
    (lambda p: p.update(device="gpu"), "device", "(got 'gpu')"),
    (lambda p: p["training"]["physionet2012"]["lstm_pooled"].update(refit_epochs="mean"),
     "training.physionet2012.lstm_pooled.refit_epochs", "(got 'mean'; allowed: own, median)"),
    (lambda p: p.update(seed=-1), "seed", "(got -1)"),
    (lambda p: p["synthesis"]["physionet2012"]["ehrdiff"].update(n_samples="tain"),
     "synthesis.physionet2012.ehrdiff.n_samples", "(got 'tain'; allowed: train)"),
    (lambda p: p["training"]["physionet2012"]["lstm_sun2018"]["cv"]["grid"][1]["hyperparameters"].update(bidirectonal=1),
     "training.physionet2012.lstm_sun2018.cv.grid.1.hyperparameters.bidirectonal",
     "unknown setting (allowed: hidden_size, bidirectional,"),
    (lambda p: p["synthetic_evaluation"]["mimic3"]["utility"]["sequence_model"]["hyperparameters"].update(n_layers=2),
     "synthetic_evaluation.mimic3.utility.sequence_model.hyperparameters.n_layers",
     "unknown setting (allowed: hidden_size, bidirectional, dropout, fc_size, n_classes, use_mask, use_delta, use_static, readout, input_summary, measurement_summary)"),
    (lambda p: p["attack"]["physionet2012"].update(lambdas={"low": 1.0, "high": 0.1, "count": 5}),
     "attack.physionet2012.lambdas", "low (1.0) must not exceed high (0.1)"),
    (lambda p: p["ingestion"]["mimic3"]["cohort"].update(stay_definition="stay"),
     "ingestion.mimic3.cohort.stay_definition", "allowed: icustay, first_icustay"),
    (lambda p: p["ingestion"]["mimic3"]["cohort"].update(window_rule="paper"),
     "ingestion.mimic3.cohort.window_rule", "(got 'paper'; allowed: padded, full_window)"),
    (lambda p: p["ingestion"]["mimic3"]["features"]["PaCO2"]["specimen"].update(value=""),
     "ingestion.mimic3.features.PaCO2.specimen.value", "at least 1 character"),
    (lambda p: p["ingestion"]["mimic3"]["features"]["HR"].update(specimen={"item": {50800: "SPECIMEN TYPE"}, "value": "ART"}),
     "ingestion.mimic3.features.HR", "a specimen restriction needs table labevents (got 'chartevents')"),
    (lambda p: p["ingestion"].update(mimic4={}), "ingestion.mimic4", "unknown data source (allowed: physionet2012, mimic3)"),
    (lambda p: p["reporting"]["physionet2012"].pop("paper_features"),
     "reporting.physionet2012.paper_features", "missing required setting"),
    (lambda p: p.update(atack={"physionet2012": {}}), "atack", "unknown setting (allowed: seed, device, ingestion,"),
])
def test_bad_value_names_its_path(base, change, path, fragment):
    params = copy.deepcopy(base)
    change(params)
    message = _error(params)
    lines = [line.strip() for line in message.splitlines()[1:]]
    assert len(lines) == 1, message
    assert lines[0].startswith(f"{path}: "), message
    assert fragment in lines[0], message


def test_every_problem_is_listed_at_once(base):
    params = copy.deepcopy(base)
    params["attack"]["physionet2012"]["n_recrods"] = 5
    params["attack"]["mimic3"]["lr"] = 0
    params["atack"] = {}
    lines = _error(params).splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == ["atack", "attack.physionet2012.n_recrods",
                                                               "attack.mimic3.lr"]


def test_flexible_values_stay_allowed(base):
    params = copy.deepcopy(base)
    attack = params["attack"]["physionet2012"]
    attack.update(n_records="all", lambdas=[0.01, 0.1], if_fewer="error")
    params["attack"]["mimic3"].update(n_records=1000, lambdas={"low": 5e-4, "high": 0.15, "count": 25})
    params["synthesis"]["physionet2012"]["ehrdiff"].update(n_samples=500, sigma_data_binary=0.14)
    params["synthesis"]["mimic3"]["kmimic"].update(n_samples="train")
    params["ingestion"]["mimic3"]["tables"] = "all"
    params["device"] = "cuda:1"
    check_parameters(params)
