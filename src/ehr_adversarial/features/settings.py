"""The `features.<source>` parameter block as a pydantic model (checked before a run; the feature
functions still take plain dicts)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SplitSettings(_Block):
    """`features.<source>.splits` (features.splits.make_splits)."""

    unit: str
    train_groups: list[str | int] = Field(min_length=1)
    test_groups: list[str | int] | None = None
    test_fraction: float = Field(0.0, ge=0, lt=1)
    validation_fraction: float = Field(gt=0, lt=1)
    n_folds: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _one_test_split(self) -> SplitSettings:
        """A group is train or test, never both; and there is a test split (groups or a fraction)."""
        both = sorted({str(g) for g in self.train_groups} & {str(g) for g in self.test_groups or []})
        if both:
            raise ValueError(f"group(s) {both} are in both train_groups and test_groups")
        if not self.test_groups and self.test_fraction == 0:
            raise ValueError("no test split: test_groups is empty and test_fraction is 0; name held-out groups "
                             "(test_groups: [c]) or hold out a share of the train groups (test_fraction: 0.2)")
        return self


class StaticSettings(_Block):
    """`features.<source>.static`: numeric columns and one-hot categories of the static table."""

    numeric: list[str] | None = None
    one_hot: dict[str, list[str | int]] | None = None


class FeatureSet(_Block):
    """`features.<source>.feature_sets.<name>`: `dynamic` lists parameter names or
    `feature: source` / `feature: [source, fallback, ...]` entries."""

    dynamic: list[str | dict[str, str | list[str]]] = Field(min_length=1)


class FeatureSettings(_Block):
    """`features.<source>` (features.model_input, features.splits)."""

    n_hours: int = Field(ge=1)
    splits: SplitSettings
    static: StaticSettings
    gap_fill: dict[str, float] | None = None
    feature_sets: dict[str, FeatureSet] = Field(min_length=1)
    units: dict[str, str] | None = None
