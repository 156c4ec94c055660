"""Project commands: `kedro run` with short errors.

Kedro loads this module's `cli` group and its `run` replaces the built-in one (same options, plus
`--verbose`; `--params` also takes lists of several items, `key=[a,b]`). When a run fails on bad input (data,
parameters, configuration, an unreachable database or download), the user sees the project's own message and
the fix, not hundreds of lines of framework frames;
the full traceback goes to the log file (conf/logging.yml) and, with `--verbose`, to the terminal. Errors that
are not about the input (a bug) keep their traceback.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import click
from kedro.config import MissingConfigException
from kedro.framework.cli.project import run as kedro_run
from kedro.framework.context import KedroContextError
from kedro.io import DatasetError
from kedro.validation.exceptions import ParameterValidationError
from omegaconf import OmegaConf

# Where the full traceback of a short error goes (a file-only logger in conf/logging.yml).
TRACEBACK_LOGGER = "ehr_adversarial.traceback"
# Modules whose errors of the kinds below speak to the user: the project's own checks and Kedro's
# configuration and session (unknown pipeline, missing config).
SPEAKING_MODULES = ("ehr_adversarial", "kedro.framework", "kedro.config")
INPUT_ERROR_TYPES = (ValueError, LookupError, OSError, RuntimeError, KedroContextError, MissingConfigException)
# Always about the input, wherever raised: bad parameters, a dataset that cannot be read or written.
ALWAYS_INPUT = (ParameterValidationError, DatasetError)


def raised_in(error: BaseException) -> str:
    """The module of the frame that raised `error`."""
    tb: TracebackType | None = error.__traceback__
    module = ""
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        tb = tb.tb_next
    return module


def is_input_error(error: BaseException) -> bool:
    """Whether `error` is the project's (or Kedro's) message about bad input rather than a bug."""
    if isinstance(error, (NotImplementedError, RecursionError)):
        return False
    if isinstance(error, ALWAYS_INPUT):
        return True
    return isinstance(error, INPUT_ERROR_TYPES) and raised_in(error).startswith(SPEAKING_MODULES)


def short_message(error: BaseException) -> str:
    """The error's own text (a KeyError's without its quotes)."""
    if isinstance(error, KeyError) and len(error.args) == 1:
        return str(error.args[0])
    return str(error) or type(error).__name__


def log_file() -> Path | None:
    """The file the traceback logger writes to, if conf/logging.yml gives it one."""
    for handler in logging.getLogger(TRACEBACK_LOGGER).handlers:
        if isinstance(handler, logging.FileHandler):
            return Path(handler.baseFilename)
    return None


def report_input_error(error: BaseException, command: str = "run") -> None:
    """One short message on stderr; the traceback into the log file."""
    logging.getLogger(TRACEBACK_LOGGER).error("kedro %s failed", command, exc_info=error)
    where = log_file()
    try:
        where = where.relative_to(Path.cwd()) if where else None
    except ValueError:
        pass
    click.secho(f"Error: {short_message(error)}", fg="red", err=True)
    hint = f"full traceback in {where}; " if where else ""
    click.echo(f"({hint}`kedro {command} --verbose ...` shows it here)", err=True)


@click.group(name="ehr_adversarial")
def cli() -> None:
    """Project commands."""


@contextlib.contextmanager
def input_errors_reported(verbose: bool, command: str) -> Iterator[None]:
    """Inside: an error about the input ends the command with its short message (`report_input_error`) and exit
    status 1; a bug, or anything with `--verbose`, keeps its traceback."""
    try:
        yield
    except Exception as error:
        if verbose or not is_input_error(error):
            raise
        report_input_error(error, command)
        sys.exit(1)


def _run(verbose: bool, **options: Any) -> dict[str, Any]:
    try:
        with input_errors_reported(verbose, "run"):
            return kedro_run.callback(**options)
    except KeyboardInterrupt:
        if verbose:
            raise
        click.echo("Interrupted: the run stopped, and the versions it had written were removed.", err=True)
        sys.exit(130)


def top_level_items(value: str) -> list[str]:
    """`value` split at the commas outside brackets: `a=[x,y],b=1` → `a=[x,y]`, `b=1`."""
    items, current, depth = [], [], 0
    for char in value:
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth = max(depth - 1, 0)
        if char == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def split_params(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """`--params` as Kedro parses it (dotted keys, OmegaConf values), except that a comma inside brackets belongs
    to its value, so a list takes several items: `features.physionet2012.splits.train_groups=[a,b]`."""
    if isinstance(value, dict):  # from a --config file
        return value
    dot_list = []
    for item in top_level_items(value):
        key, equals, val = item.partition("=")
        if not equals or not key.strip():
            ctx.fail(f"Invalid format of `{param.name}` option: Item `{item}` must contain a key and a value "
                     "separated by `=`.")
        dot_list.append(f"{key.strip()}={val}")
    return OmegaConf.to_container(OmegaConf.from_dotlist(dot_list))


def _run_options() -> list[click.Parameter]:
    """Kedro's `run` options, with the bracket-aware `--params`."""
    options = []
    for option in kedro_run.params:
        if option.name == "params":
            option = copy.copy(option)
            option.callback = split_params
        options.append(option)
    return options


cli.add_command(click.Command(
    name="run",
    callback=_run,
    params=[*_run_options(),
            click.Option(["--verbose"], is_flag=True,
                         help="On an error, print the full traceback (it always goes to the log file).")],
    help=kedro_run.help,
    short_help=kedro_run.short_help,
))


def load_service(model_name: str, env: str | None, load_versions: dict[str, str]) -> Any:
    """A `ModelService` of the environment's study, read through the catalog: a torch model
    (`training.<model>.model`), a baseline (`training.<model>.estimator`) or the stack (its estimator and its
    members), with its feature spec, its metrics (decision threshold) and the source's attack and ingestion
    settings."""
    from ehr_adversarial.pipeline_registry import STUDIES
    from ehr_adversarial.serving import service as serving
    from ehr_adversarial.session import StudySession

    with StudySession.create(project_path=Path.cwd(), env=env) as session:
        source = session.environment_source()
        study = STUDIES[source]
        torch_models = {**study.torch_models, **{r: study.torch_models[p] for r, p in study.robust_models.items()}}
        servable = [*torch_models, *study.baseline_models, *(["stack"] if study.stack_members else [])]
        if model_name not in servable:
            raise ValueError(f"--model {model_name!r}: the {source} study serves {', '.join(servable)}.")
        context = session.load_context()
        catalog = context._get_catalog(load_versions=load_versions)  # the hook `kedro run --load-versions` uses
        params = context.params
        versions: dict[str, str] = {}

        def load(name: str) -> Any:
            dataset = catalog.get(name)
            try:
                versions[name] = dataset.resolve_load_version()
                return dataset.load()
            except DatasetError as error:
                raise ValueError(f"{name} cannot be loaded ({short_message(error).splitlines()[0]}); train the model "
                                 f"first: `kedro run{' --env ' + env if env else ''} --pipelines features,training` "
                                 "(or the whole study, `kedro run`).") from error

        members = study.stack_members if model_name == "stack" else (model_name,)
        feature_sets = {study.models.get(m, torch_models.get(m)) for m in members}
        if len(feature_sets) != 1:
            raise ValueError(f"the stack's members read different feature sets ({sorted(feature_sets)}); the server "
                             "builds one model input per record.")
        # The trained artifacts first: a missing one is the error worth naming.
        trained = {m: load(f"training.{m}.model" if m in torch_models else f"training.{m}.estimator") for m in members}
        stacker = load("training.stack.estimator") if model_name == "stack" else None
        feature_spec = load(f"features.{feature_sets.pop()}.feature_spec")
        model = trained[model_name] if model_name in torch_models else None
        probability = None
        if model is None:
            member_probability = {
                m: serving.torch_model_probability(trained[m], params["device"]) if m in torch_models
                else serving.estimator_probability(trained[m], feature_spec) for m in members}
            probability = (serving.stack_probability(stacker, member_probability) if stacker is not None
                           else member_probability[model_name])
        metrics = load(f"training.{model_name}.metrics")
    return serving.ModelService(
        name=model_name, model=model, probability=probability, feature_spec=feature_spec,
        threshold=metrics.get("threshold"), threshold_rule=metrics.get("threshold_rule"),
        attack=params["attack"][source], ingestion=params["ingestion"][source],
        source=source, device=params["device"], seed=int(params["seed"]),
        about={"versions": versions, "test_split": metrics.get("test_split"),
               "test_auroc": metrics.get("test", {}).get("auroc", {}).get("value"),
               "test_auprc": metrics.get("test", {}).get("auprc", {}).get("value")},
    )


def _kedro_run_option(name: str) -> click.Parameter:
    """One of `kedro run`'s options, as it parses it (e.g. `--load-versions dataset:version`)."""
    return next(option for option in kedro_run.params if option.name == name)


@cli.command(params=[_kedro_run_option("env"), _kedro_run_option("load_versions")])
@click.option("--model", "model_name", default="dssm", show_default=True,
              help="The model to serve: a torch model (predictions and susceptible locations), a baseline or "
                   "`stack` (predictions).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--verbose", is_flag=True, help="On an error, print the full traceback.")
def serve(model_name: str, env: str | None, host: str, port: int, load_versions: dict[str, str],
          verbose: bool) -> None:
    """Serve a trained model over HTTP: P(death) and susceptible locations of records (API docs at /docs)."""
    import uvicorn

    from ehr_adversarial.serving import create_app

    with input_errors_reported(verbose, "serve"):
        service = load_service(model_name, env, load_versions)
    click.echo(f"serving {model_name} ({', '.join(f'{k} {v}' for k, v in service.about['versions'].items())}) "
               f"at http://{host}:{port} (API docs: /docs)", err=True)
    uvicorn.run(create_app(service), host=host, port=port, log_level="info")


__all__ = ["cli", "load_service", "is_input_error", "raised_in", "short_message", "split_params", "top_level_items"]
