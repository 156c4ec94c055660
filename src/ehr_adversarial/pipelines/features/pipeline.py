"""Features pipeline: splits per source, then one modular tensor pipeline per feature set.

Datasets (under the source namespace):
- `<source>.splits`, shared by all feature sets of a source;
- `<source>.<feature_set>.hourly_cells`, `.feature_spec`, `.model_input_{train,validation,test}`.
"""

from __future__ import annotations

from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import build_hourly_cells, build_model_input, fit_feature_spec, make_splits

# Which feature sets each source builds; their contents live in parameters_features.yml.
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "physionet2012": ("full", "sun2018"),
    "mimic3": ("sun2018",),
}


def _named(func, feature_set: str):
    """`func` with its feature_set_name bound, keeping the function's name for kedro-viz."""
    return update_wrapper(partial(func, feature_set_name=feature_set), func)


def feature_set_pipeline(feature_set: str) -> Pipeline:
    """Hourly cells → train-split scaler → imputed, scaled tensors, for one feature set.

    Free inputs: timeseries, static, splits, params:features (the source's block) and
    params:feature_set (this set's block); create_pipeline maps them.
    """
    return Pipeline(
        [
            node(
                _named(build_hourly_cells, feature_set),
                inputs=["timeseries", "splits", "params:features", "params:feature_set"],
                outputs="hourly_cells",
                name="build_hourly_cells",
            ),
            node(
                _named(fit_feature_spec, feature_set),
                inputs=["hourly_cells", "static", "splits", "params:features", "params:feature_set"],
                outputs="feature_spec",
                name="fit_feature_spec",
            ),
            node(
                build_model_input,
                inputs=["hourly_cells", "static", "splits", "feature_spec"],
                outputs=["model_input_train", "model_input_validation", "model_input_test"],
                name="build_model_input",
            ),
        ]
    )


def create_pipeline(source: str = "physionet2012", **kwargs) -> Pipeline:
    """Splits plus every feature set of `source`, under the namespace `source`."""
    if source not in FEATURE_SETS:
        raise ValueError(f"no feature sets defined for source {source!r}; known: {sorted(FEATURE_SETS)}.")
    set_params = {fs: f"params:features.{source}.feature_sets.{fs}" for fs in FEATURE_SETS[source]}
    splits = Pipeline(
        [
            node(
                make_splits,
                inputs=["static", "params:features", "params:seed"],
                outputs="splits",
                name="make_splits",
            )
        ]
    )
    feature_sets = [
        pipeline(
            feature_set_pipeline(fs),
            namespace=fs,
            inputs={"timeseries": "timeseries", "static": "static", "splits": "splits"},
            parameters={"params:features": "params:features", "params:feature_set": set_params[fs]},
        )
        for fs in FEATURE_SETS[source]
    ]
    return pipeline(
        sum(feature_sets, splits),
        namespace=source,
        parameters={
            "params:features": f"params:features.{source}",
            "params:seed": "params:seed",
            **{name: name for name in set_params.values()},
        },
    )
