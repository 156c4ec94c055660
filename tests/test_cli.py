"""`kedro run` as a user meets it: short errors with the fix, the traceback in the log file, no telemetry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from ehr_adversarial.cli import cli, is_input_error, short_message, split_params
from tests.conftest import PROJECT_ROOT
from tests.conftest import project_copy as copy_project

KEDRO = str(Path(sys.executable).with_name("kedro"))


def _kedro(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("KEDRO_DISABLE_TELEMETRY", "DO_NOT_TRACK")}
    return subprocess.run([KEDRO, *args], cwd=root, env={**environment, **env}, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def offline_project(tmp_path: Path) -> Path:
    """A project copy whose PhysioNet folder is empty and whose download server refuses connections."""
    (tmp_path / "project").mkdir()
    root = copy_project(tmp_path / "project")
    (root / "conf" / "local" / "parameters.yml").write_text(
        "ingestion:\n  physionet2012:\n    download:\n      base_url: http://127.0.0.1:9/physionet/\n      timeout_s: 5\n")
    (tmp_path / "empty").mkdir()
    return root


def test_the_offline_first_run_says_which_variable_to_set_and_which_files_to_place(offline_project: Path, tmp_path: Path):
    done = _kedro(offline_project, "run", EHR_PHYSIONET2012_DIR=str(tmp_path / "empty"))
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert len(output.splitlines()) <= 15, output
    assert "Traceback" not in output and "╭" not in output
    assert "export EHR_PHYSIONET2012_DIR=" in output
    for name in ("set-a.tar.gz", "Outcomes-a.txt", "set-b.tar.gz", "Outcomes-b.txt"):
        assert name in output
    assert "resume" not in output  # no .part exists to resume from
    log = (offline_project / "logs" / "ehr_adversarial.log").read_text()
    assert "Traceback" in log and "DownloadError" in log
    # Nothing of the failed run is left as a version.
    assert not [p for p in (offline_project / "data").rglob("*") if p.is_file()]


def test_verbose_shows_the_traceback(offline_project: Path, tmp_path: Path):
    done = _kedro(offline_project, "run", "--pipelines", "ingestion", "--verbose",
                  EHR_PHYSIONET2012_DIR=str(tmp_path / "empty"))
    assert done.returncode != 0
    assert "Traceback" in done.stderr and "DownloadError" in done.stderr


def test_an_unknown_pipeline_is_one_line_with_suggestions(offline_project: Path):
    done = _kedro(offline_project, "run", "--pipelines", "trainin")
    assert done.returncode == 1
    assert "Failed to find the pipeline named 'trainin'" in done.stderr and "Traceback" not in done.stderr


def test_telemetry_is_off_and_leaves_tracked_files_alone(offline_project: Path):
    before = (offline_project / "pyproject.toml").read_bytes()
    done = _kedro(offline_project, "registry", "list")
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "anonymous usage data" not in output and "Heap" not in output
    assert "register_new_resolver" not in output
    assert (offline_project / "pyproject.toml").read_bytes() == before
    assert (PROJECT_ROOT / ".telemetry").read_text().strip() == "consent: false"
    tracked = subprocess.run(["git", "ls-files", ".telemetry"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert tracked.stdout.strip() == ".telemetry"


def _raise(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as caught:  # noqa: BLE001 - the test wants the traceback
        return caught


def test_project_errors_are_short_and_bugs_keep_their_traceback():
    from ehr_adversarial.sources.physionet2012.fetch import _set_names

    try:
        _set_names({"sets": ["ab"]})
    except ValueError as error:
        assert is_input_error(error)
        assert short_message(error).startswith("ingestion.physionet2012.sets must list set letters")
    else:
        pytest.fail("bad set names were accepted")
    assert not is_input_error(_raise(ZeroDivisionError("division by zero")))
    assert not is_input_error(_raise(ValueError("raised by a library, not the project")))
    assert short_message(KeyError("no such model")) == "no such model"


def test_params_take_lists_of_several_items():
    option = next(p for p in cli.commands["run"].params if p.name == "params")
    assert option.callback is split_params  # the project's `kedro run --params`
    context = click.Context(cli.commands["run"])
    parsed = split_params(context, option, "features.physionet2012.splits.train_groups=[a,b],"
                                           "features.physionet2012.splits.test_groups=[c], seed=3,device=cpu")
    assert parsed == {"features": {"physionet2012": {"splits": {"train_groups": ["a", "b"], "test_groups": ["c"]}}},
                      "seed": 3, "device": "cpu"}
    assert split_params(context, option, "") == {}
    assert split_params(context, option, {"seed": 3}) == {"seed": 3}  # from a --config file
    with pytest.raises(click.UsageError, match="Item `b]` must contain a key and a value"):
        split_params(context, option, "a=[x,y],b]")


def test_an_unreachable_database_is_one_message_with_the_fix(offline_project: Path):
    done = _kedro(offline_project, "run", "--env", "mimic3_postgres", "--pipelines", "ingestion", PGPORT="9")
    assert done.returncode == 1
    assert "cannot connect to PostgreSQL database" in done.stderr and "127.0.0.1:9" in done.stderr
    assert "PGPASSWORD" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) <= 6, done.stderr


@pytest.mark.parametrize(("override", "expected"), [
    ("attack.physionet2012.n_recrods=5", "attack.physionet2012.n_recrods: unknown setting (allowed: n_records, "),
    ("attack.physionet2012.n_records=abc", "attack.physionet2012.n_records: should be 'all' or should be a valid "
                                           "integer, unable to parse string as an integer (got 'abc'"),
])
def test_a_bad_parameter_stops_the_run_before_any_node(offline_project: Path, override: str, expected: str):
    done = _kedro(offline_project, "run", "--params", override)
    assert done.returncode == 1
    assert expected in done.stderr and "Traceback" not in done.stderr
    assert "[1/" not in done.stderr  # no node ran
    assert not [p for p in (offline_project / "data").rglob("*") if p.is_file()]


def test_kedro_serve_without_a_trained_model_says_which_run_makes_one(tmp_path: Path):
    root = copy_project(tmp_path)
    done = _kedro(root, "serve", "--model", "lstm_pooled", "--port", "9", KEDRO_DISABLE_TELEMETRY="1")
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "training.lstm_pooled.model cannot be loaded" in output and "kedro run --pipelines features,training" in output
    assert "Traceback" not in output and "`kedro serve --verbose ...` shows it here" in output

    done = _kedro(root, "serve", "--model", "xgboost", "--port", "9", KEDRO_DISABLE_TELEMETRY="1")
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert ("--model 'xgboost': the physionet2012 study serves lstm_sun2018, lstm_pooled, dssm, lstm_pooled_adversarial, "
            "logreg, gbm, gbm_sun2018, stack.") in output
