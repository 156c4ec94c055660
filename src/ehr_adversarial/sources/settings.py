"""The `ingestion.<source>` parameter blocks as pydantic models (checked before a run; the
ingestion functions still take plain dicts). PhysioNet 2012 reads files, MIMIC-III tables."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from ehr_adversarial.sources.mimic3.schema import (
    REQUIRED_TABLES,
    SOURCE_TABLES,
    STAY_DEFINITIONS,
    WINDOW_RULES,
)


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid")


SetLetter = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[a-z]$")]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$")]


class DownloadSettings(_Block):
    """`ingestion.physionet2012.download`: what to fetch from PhysioNet when raw_dir lacks it."""

    enabled: bool = False
    base_url: str = ""
    sha256sums: str = "SHA256SUMS.txt"
    timeout_s: float = Field(60, gt=0)
    progress: bool = True


class Physionet2012Ingestion(_Block):
    """`ingestion.physionet2012` (sources.physionet2012: fetch, classify, static)."""

    raw_dir: str
    sets: list[SetLetter] = Field(min_length=1)
    download: DownloadSettings = DownloadSettings()
    pinned_sha256: dict[str, Sha256] | None = None
    missing_marker: float
    window_minutes: int = Field(ge=0)
    descriptors: list[str]
    icu_types: dict[int, str]
    near_empty_records: list[int] | None = None
    ranges: dict[str, tuple[float, float]]


class ValidRange(_Block):
    """A valid range of a MIMIC-III item: value > above, value < below, value <= at_most."""

    above: float | None = None
    below: float | None = None
    at_most: float | None = None


class SpecimenRestriction(_Block):
    """`ingestion.mimic3.features.<name>.specimen`: keep a LABEVENTS row only when the specimen
    item (one itemid with its D_LABITEMS label) at the row's charttime says `value`."""

    item: dict[int, str] = Field(min_length=1, max_length=1)
    value: Annotated[str, StringConstraints(min_length=1)]


class Mimic3Feature(_Block):
    """`ingestion.mimic3.features.<name>`: the table and itemids a feature is read from."""

    table: Literal[SOURCE_TABLES]
    items: dict[int, str] = Field(min_length=1)
    valid: ValidRange | None = None
    fahrenheit_items: dict[int, str] | None = None
    fahrenheit_valid: ValidRange | None = None
    specimen: SpecimenRestriction | None = None

    @model_validator(mode="after")
    def _specimen_only_for_labs(self) -> Mimic3Feature:
        if self.specimen is not None and self.table != "labevents":
            raise ValueError(f"a specimen restriction needs table labevents (got {self.table!r})")
        return self


class AgeCap(_Block):
    above: float
    value: float


class CohortSettings(_Block):
    """`ingestion.mimic3.cohort` (sources.mimic3.cohort.cohort_settings)."""

    stay_definition: Literal[STAY_DEFINITIONS]
    min_age_years: float
    age_cap: AgeCap
    min_hospital_los_days: float
    min_icu_los_days: float
    window_hours: int = Field(ge=1)
    window_rule: Literal[WINDOW_RULES]


class Mimic3Ingestion(_Block):
    """`ingestion.mimic3` (sources.mimic3: load, items, cohort, extract)."""

    csv_dir: str | None = None
    load_csv: bool = True
    tables: Annotated[str, StringConstraints(pattern=r"^(?i:all)$")] | list[str] = Field(
        default_factory=lambda: list(REQUIRED_TABLES))
    verify_checksums: bool = True
    cohort: CohortSettings
    features: dict[str, Mimic3Feature] = Field(min_length=1)
