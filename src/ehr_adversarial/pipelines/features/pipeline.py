"""Features pipeline, namespace `features`: `features.splits`, shared by every feature set, then one nested
pipeline per feature set (`features.<feature_set>.hourly_cells`, `.feature_spec`, `.model_input_<split>`)."""

from __future__ import annotations

from collections.abc import Sequence

from kedro.pipeline import Pipeline, node, pipeline

from ehr_adversarial.pipelines import bound

from . import nodes


def feature_set_pipeline(feature_set: str) -> Pipeline:
    """Hourly cells → train-split scaler → imputed, scaled tensors, for one feature set.

    Free inputs: timeseries, static, splits, params:features (the source's block) and
    params:feature_set (this set's block).
    """
    return Pipeline([
        node(bound(nodes.build_hourly_cells, feature_set_name=feature_set),
             ["timeseries", "splits", "params:features", "params:feature_set"], "hourly_cells",
             name="build_hourly_cells"),
        node(bound(nodes.fit_feature_spec, feature_set_name=feature_set),
             ["hourly_cells", "static", "splits", "params:features", "params:feature_set"], "feature_spec",
             name="fit_feature_spec"),
        node(nodes.build_model_input, ["hourly_cells", "static", "splits", "feature_spec"],
             ["model_input_train", "model_input_validation", "model_input_test"], name="build_model_input"),
    ])


def create_pipeline(source: str, feature_sets: Sequence[str]) -> Pipeline:
    """Splits and every one of `feature_sets` of `source` (their contents: parameters_features.yml)."""
    settings = f"params:features.{source}"
    splits = Pipeline([node(nodes.make_splits, ["ingestion.static", settings, "params:seed"], "features.splits",
                            name="make_splits", namespace="features")])
    per_set = [
        pipeline(
            feature_set_pipeline(feature_set),
            namespace=f"features.{feature_set}",
            inputs={"timeseries": "ingestion.timeseries", "static": "ingestion.static", "splits": "features.splits"},
            parameters={"params:features": settings,
                        "params:feature_set": f"{settings}.feature_sets.{feature_set}"},
        )
        for feature_set in feature_sets
    ]
    return sum(per_set, splits)
