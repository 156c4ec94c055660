"""Project pipelines, built from one static table: `STUDIES` says, per data source, which feature sets,
models, generators and real-baseline seeds exist. Nothing else (no run parameter, no hook) shapes the graph.

Registered names:
- `__default__` (plain `kedro run`): the study of the default source, ingestion → features → training →
  attack → reporting;
- `<stage>` (`ingestion`, `features`, ..., `synthetic_attack`) and `synthetic` (synthesis → synthetic_evaluation
  → synthetic_attack): the default source's;
- `<source>`, `<source>.<stage>`, `<source>.synthetic`: the same for every source;
- `<source>.ehrdiff_codes`: EHRDiff on the patient x ICD-9 code matrix alone (ingestion up to the diagnoses,
  then `synthesis.ehrdiff_codes`), for the sources with diagnoses (`Study.ehrdiff_codes`);
- `<source>.robust` (and `robust` for the default source): the adversarially trained models of
  `Study.robust_models`, their attack and `reporting.robustness` beside the plain models of the default run.

The run environment chooses the data source (`source` in conf/<env>/globals.yml), and the project's session
(`ehr_adversarial.session.StudySession`) runs plain names on it: `kedro run --env mimic3_demo --pipelines
ingestion` runs `mimic3.ingestion`. Every node carries its source as a tag, so a pipeline of another source
than the environment's is refused before it runs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from kedro.pipeline import Pipeline

from ehr_adversarial.synthetic_attack.compare import RetrainedModel

from .pipelines import (
    attack,
    features,
    ingestion,
    reporting,
    synthesis,
    synthetic_attack,
    synthetic_evaluation,
    training,
)


@dataclass(frozen=True)
class Study:
    """What exists for one data source."""

    feature_sets: tuple[str, ...]
    torch_models: dict[str, str]  # model → the feature set it reads; trained, attacked and reported
    baseline_models: dict[str, str]  # scikit-learn baselines → their feature set; trained only
    generators: dict[str, str]  # generator → the feature set it learns
    synthetic_attack_models: tuple[str, ...]  # torch models retrained on each generator's data
    real_baseline_seeds: tuple[int, ...]  # the same recipe on the real training split, once per seed
    # Generators that also learn the training records' ICD-9 category matrix; only sources with diagnoses.
    code_generators: frozenset[str] = frozenset()
    # EHRDiff on the patient x ICD-9 code matrix alone (`<source>.ehrdiff_codes`); only sources with diagnoses.
    ehrdiff_codes: bool = False
    # Seed offsets of each generator's repeat runs (`<generator>_rep<k>`, trained and sampled from seed + k and
    # evaluated alike): with the main run, the seeds that the synthetic headlines' spread and CIs come from.
    generator_repeats: tuple[int, ...] = (1, 2)
    # Models whose logits `stack` combines (the combination fitted on their validation predictions);
    # empty = no stack. Needs a validation split with enough deaths for its out-of-fold folds.
    stack_members: tuple[str, ...] = ()
    # Adversarially trained variants (`<source>.robust`, not in the default run): robust model → the torch model it
    # hardens; its settings are `training.<source>.<robust model>` (the plain block with `adversarial`).
    robust_models: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = [f"unknown generator {g!r} (known: {', '.join(synthesis.GENERATORS)})"
                    for g in self.generators if g not in synthesis.GENERATORS]
        problems += [f"{m!r} is both a torch model and a baseline model"
                     for m in self.torch_models if m in self.baseline_models]
        problems += [f"{kind} {name!r} reads feature set {fs!r}, which is not in feature_sets"
                     for kind, table in (("model", self.models), ("generator", self.generators))
                     for name, fs in table.items() if fs not in self.feature_sets]
        problems += [f"synthetic_attack_models names {m!r}, which is not one of torch_models "
                     f"({', '.join(self.torch_models)}); only torch models can be attacked"
                     for m in self.synthetic_attack_models if m not in self.torch_models]
        problems += [f"stack_members names {m!r}, which is not one of the models ({', '.join(self.models)})"
                     for m in self.stack_members if m not in self.models]
        problems += [f"robust_models hardens {plain!r}, which is not one of torch_models" for plain in
                     self.robust_models.values() if plain not in self.torch_models]
        problems += [f"robust model {robust!r} has the name of a model of the study" for robust in self.robust_models
                     if robust in self.models or robust == "stack"]
        if "stack" in self.models:
            problems.append("no model may be called 'stack': the stacked model has that name")
        problems += [f"code_generators names {g!r}, which is not one of generators"
                     for g in self.code_generators if g not in self.generators]
        if len(set(self.generator_repeats)) != len(self.generator_repeats) or 0 in self.generator_repeats:
            problems.append(f"generator_repeats {self.generator_repeats} must be distinct non-zero seed offsets "
                            "(offset 0 is the main run)")
        if len(set(self.real_baseline_seeds)) != len(self.real_baseline_seeds):
            problems.append(f"real_baseline_seeds {self.real_baseline_seeds} repeats a seed; each names a dataset")
        if problems:
            raise ValueError("invalid study: " + "; ".join(problems))

    @property
    def models(self) -> dict[str, str]:
        return {**self.torch_models, **self.baseline_models}

    @property
    def generator_runs(self) -> dict[str, tuple[str, int]]:
        """Every generator run: label → (generator, seed offset); the main runs first (label = generator)."""
        return ({g: (g, 0) for g in self.generators}
                | {f"{g}_rep{k}": (g, k) for g in self.generators for k in self.generator_repeats})


STUDIES: dict[str, Study] = {
    "physionet2012": Study(
        feature_sets=("full", "sun2018"),
        # lstm_sun2018: the paper's model; lstm_pooled: the same LSTM with statics, a pooled read-out and hourly
        # summaries of x, the competent model on the same inputs (its yardstick is gbm_sun2018).
        torch_models={"lstm_sun2018": "sun2018", "lstm_pooled": "sun2018", "dssm": "full"},
        # gbm_sun2018: the same-input yardstick of lstm_sun2018 (gradient boosting on its tensors' summaries).
        baseline_models={"logreg": "full", "gbm": "full", "gbm_sun2018": "sun2018"},
        generators={"ehrdiff": "full", "synehrgy": "full", "kmimic": "full"},
        # The generators learn `full`, which dssm reads (lstm_sun2018 reads sun2018).
        synthetic_attack_models=("dssm",),
        real_baseline_seeds=(1, 2, 3),
        # The strongest torch model and tree model: of the member sets benchmarks/stack_selection.py compares on
        # the validation split, the best in AUROC and AUPRC (docs/models.md, "Stacking").
        stack_members=("dssm", "gbm"),
        # The project's attacked LSTM trained on sparse L1 adversarial examples (docs/attack.md, "Adversarial
        # training"): `kedro run --pipelines robust` after the default run.
        robust_models={"lstm_pooled_adversarial": "lstm_pooled"},
    ),
    "mimic3": Study(
        feature_sets=("sun2018",),
        torch_models={"lstm_sun2018": "sun2018", "dssm": "sun2018"},
        baseline_models={"logreg": "sun2018", "gbm": "sun2018"},
        generators={"ehrdiff": "sun2018", "synehrgy": "sun2018", "kmimic": "sun2018"},
        synthetic_attack_models=("lstm_sun2018", "dssm"),
        real_baseline_seeds=(1, 2, 3),
        # MIMIC-III has ICD-9 diagnoses; EHRDiff models the code matrix jointly, SynEHRgy writes code tokens.
        code_generators=frozenset({"ehrdiff", "synehrgy"}),
        ehrdiff_codes=True,
    ),
}
DEFAULT_SOURCE = "physionet2012"
STAGES = ("ingestion", "features", "training", "attack", "reporting", "synthesis", "synthetic_evaluation",
          "synthetic_attack")
MAIN_STUDY = ("ingestion", "features", "training", "attack", "reporting")
SYNTHETIC_STUDY = ("synthesis", "synthetic_evaluation", "synthetic_attack")
# Pipelines of their own beside the stages, for the sources whose Study enables them.
STANDALONE = ("ehrdiff_codes", "robust")


def retrained_models(study: Study) -> list[RetrainedModel]:
    """The models the synthetic attack trains: each model on each generator's data, then the real baselines."""
    for model in study.synthetic_attack_models:
        for generator, feature_set in study.generators.items():
            if study.torch_models[model] != feature_set:
                raise ValueError(f"{model} reads {study.torch_models[model]!r} but {generator} synthesises "
                                 f"{feature_set!r}; a model must read the feature set the generators learn")
    # Every generator run (each generator from every seed), so the comparison has a spread over generator seeds.
    return ([RetrainedModel(run, model, None, generator) for model in study.synthetic_attack_models
             for run, (generator, _offset) in study.generator_runs.items()]
            + [RetrainedModel(f"real_retrained_s{seed}", model, seed, "real_retrained")
               for model in study.synthetic_attack_models for seed in study.real_baseline_seeds])


def synthetic_attack_pipeline(source: str, study: Study) -> Pipeline:
    """Each retrained model: its training and evaluation, then the attack stage's modular pipeline under its
    namespace; and the comparison of all rankings with the real models'."""
    retrained = retrained_models(study)
    parts = []
    for entry in retrained:
        feature_set = study.torch_models[entry.model]
        namespace = synthetic_attack.namespace_of(entry)
        parts += [synthetic_attack.retraining_pipeline(source, entry, feature_set),
                  attack.create_model_pipeline(source, namespace, f"{namespace}.model", feature_set)]
    return sum(parts, synthetic_attack.comparison_pipeline(source, retrained))


def robust_pipeline(source: str, study: Study) -> Pipeline:
    """Each adversarially trained model: its training, the attack stage's modular pipeline under its namespace,
    and the comparison with the plain models' training and attack (read from the default run's versions)."""
    parts = []
    for robust, plain in study.robust_models.items():
        feature_set = study.torch_models[plain]
        parts += [training.model_pipeline(source, robust, feature_set, is_torch=True),
                  attack.create_model_pipeline(source, f"attack.{robust}", f"training.{robust}.model", feature_set)]
    return sum(parts, reporting.robustness_pipeline(source, study.robust_models))


def stage_pipelines(source: str, study: Study) -> dict[str, Pipeline]:
    """Every stage of one source, each node tagged with the source."""
    stages = {
        "ingestion": ingestion.create_pipeline(source),
        "features": features.create_pipeline(source, study.feature_sets),
        "training": training.create_pipeline(source, study.models, study.torch_models, study.stack_members),
        "attack": attack.create_pipeline(source, study.torch_models),
        "reporting": reporting.create_pipeline(source, study.torch_models),
        "synthesis": synthesis.create_pipeline(source, study.generators, study.code_generators,
                                               study.generator_runs),
        "synthetic_evaluation": synthetic_evaluation.create_pipeline(source, study.generators, study.code_generators,
                                                                     study.generator_runs),
        "synthetic_attack": synthetic_attack_pipeline(source, study),
    }
    return {stage: Pipeline(pipe, tags=source) for stage, pipe in stages.items()}


def register_pipelines() -> dict[str, Pipeline]:
    """`<source>`, `<source>.<stage>`, `<source>.synthetic` for every source, and the same names without the
    source prefix for the default source."""
    registry: dict[str, Pipeline] = {}
    for source, study in STUDIES.items():
        with warnings.catch_warnings():
            # Stages read other stages' datasets by their namespaced names (`ingestion.static` in `features`)
            # on purpose; Kedro warns about every such dotted name.
            warnings.filterwarnings("ignore", message="One or more dataset names contain '.'")
            stages = stage_pipelines(source, study)
            # The stages go in first: kedro-viz places a dataset inside the namespace of the first registered
            # pipeline that shows it, which should be the stage that writes it.
            registry |= {f"{source}.{stage}": pipe for stage, pipe in stages.items()}
            registry[source] = sum((stages[stage] for stage in MAIN_STUDY), Pipeline([]))
            registry[f"{source}.synthetic"] = sum((stages[stage] for stage in SYNTHETIC_STUDY), Pipeline([]))
            if study.ehrdiff_codes:  # the ingestion steps up to the diagnoses, then the binary-code EHRDiff
                registry[f"{source}.ehrdiff_codes"] = Pipeline(
                    stages["ingestion"].to_outputs("ingestion.diagnoses") + synthesis.create_codes_pipeline(source),
                    tags=source)
            if study.robust_models:
                registry[f"{source}.robust"] = Pipeline(robust_pipeline(source, study), tags=source)
    for name in (*STAGES, "synthetic", *STANDALONE):
        if f"{DEFAULT_SOURCE}.{name}" in registry:
            registry[name] = registry[f"{DEFAULT_SOURCE}.{name}"]
    registry["__default__"] = registry[DEFAULT_SOURCE]
    return registry
