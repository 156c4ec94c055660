"""The HTTP API of a `ModelService` (FastAPI; `kedro serve` runs it with uvicorn, the docs are at /docs).

    GET  /health                          liveness
    GET  /model                           what the model reads, its threshold and test metrics
    POST /predict                         JSON records → P(death) and the decision
    POST /predict/physionet2012           one PhysioNet 2012 record file (text/plain) → the same
    POST /susceptibility                  JSON records → the smallest L1 change that flips the decision, cell by cell
    POST /susceptibility/physionet2012    one PhysioNet 2012 record file → the same

A bad request is answered 422 with a message that names the record, field or line and says how to fix it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import Body, FastAPI, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from ehr_adversarial.serving.service import (
    ATTACK_MODES,
    MAX_RECORDS,
    ModelService,
)

PHYSIONET_EXAMPLE = "Time,Parameter,Value\n00:00,RecordID,142675\n00:00,Age,70\n00:00,Gender,1\n00:00,ICUType,2\n" \
                    "00:07,HR,88\n00:07,GCS,15\n01:07,HR,91\n"


class Measurement(BaseModel):
    """One measurement, as ingestion writes the time series: minutes since ICU admission, parameter, value
    (the parameter names and units of the model's source; GET /model lists them)."""

    model_config = ConfigDict(extra="forbid")
    minutes: int = Field(ge=0, description="minutes since ICU admission; the model reads the first n_hours")
    parameter: str
    value: float = Field(allow_inf_nan=False)


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")
    record_id: int
    static: dict[str, float | str | None] = Field(
        default_factory=dict, description="descriptors, e.g. age, gender, height, weight, icu_type; missing = unknown")
    measurements: list[Measurement] = Field(default_factory=list)


class Records(BaseModel):
    model_config = ConfigDict(extra="forbid")
    records: list[Record] = Field(min_length=1, max_length=MAX_RECORDS)


# The attack's modes: the study's default, or measured values only.
AttackMode = Annotated[Literal[tuple(ATTACK_MODES)], Query(
    description="all_cells: any cell, measured or imputed (the study's default); measured: only measured values, "
                "each change moving the hours forward-filled from it")]


def records_frames(request: Records) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The request as the ingestion contract's tables: timeseries (record_id, minutes, parameter, value), static."""
    timeseries = pd.DataFrame(
        [(r.record_id, m.minutes, m.parameter, m.value) for r in request.records for m in r.measurements],
        columns=["record_id", "minutes", "parameter", "value"],
    ).astype({"record_id": "int64", "minutes": "int64", "parameter": "str", "value": "float64"})
    static = pd.DataFrame([{**r.static, "record_id": r.record_id} for r in request.records])
    for column in static.columns.drop("record_id"):
        numeric = pd.to_numeric(static[column], errors="coerce")
        if numeric.notna().sum() == static[column].notna().sum():
            static[column] = numeric.astype("float64")
    return timeseries, static


def _unprocessable(error: ValueError) -> HTTPException:
    return HTTPException(status_code=422, detail=str(error))


def create_app(service: ModelService) -> FastAPI:
    """The API of one served model."""
    app = FastAPI(title=f"ehr_adversarial: {service.name}",
                  description="In-hospital mortality predictions and susceptible locations (Sun et al., KDD 2018) "
                              f"from the trained model {service.name!r}.")

    def physionet2012(body: bytes, name: str | None) -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, Any]]]:
        if not body.strip():
            raise ValueError("the request body is empty; send one PhysioNet 2012 record file as text/plain.")
        timeseries, static, rejected = service.physionet2012_records({name: body})
        return timeseries, static, rejected.drop(columns=["record_id"]).to_dict("records")

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "model": service.name}

    @app.get("/model")
    def describe() -> dict[str, Any]:
        return service.describe()

    @app.post("/predict")
    def predict(request: Records) -> dict[str, Any]:
        try:
            predictions = service.predict(*records_frames(request))
        except ValueError as error:
            raise _unprocessable(error) from error
        return {"model": service.name, "threshold": service.threshold, "predictions": predictions.to_dict("records")}

    @app.post("/predict/physionet2012")
    def predict_physionet2012(
        body: bytes = Body(..., media_type="text/plain", examples=[PHYSIONET_EXAMPLE]),
        name: str | None = Query(None, description="the file's name (errors name it); default: from its RecordID row"),
    ) -> dict[str, Any]:
        try:
            timeseries, static, rejected = physionet2012(body, name)
            predictions = service.predict(timeseries, static)
        except ValueError as error:
            raise _unprocessable(error) from error
        return {"model": service.name, "threshold": service.threshold, "predictions": predictions.to_dict("records"),
                "rejected_rows": rejected}

    @app.post("/susceptibility")
    def susceptibility(request: Records, mode: AttackMode = "all_cells") -> dict[str, Any]:
        try:
            records = service.susceptible_locations(*records_frames(request), mode=mode)
        except ValueError as error:
            raise _unprocessable(error) from error
        return {"model": service.name, "mode": mode, "class_boundary_p_death": service.class_boundary(),
                "records": records}

    @app.post("/susceptibility/physionet2012")
    def susceptibility_physionet2012(
        body: bytes = Body(..., media_type="text/plain", examples=[PHYSIONET_EXAMPLE]),
        name: str | None = Query(None, description="the file's name (errors name it); default: from its RecordID row"),
        mode: AttackMode = "all_cells",
    ) -> dict[str, Any]:
        try:
            timeseries, static, rejected = physionet2012(body, name)
            records = service.susceptible_locations(timeseries, static, mode=mode)
        except ValueError as error:
            raise _unprocessable(error) from error
        return {"model": service.name, "mode": mode, "class_boundary_p_death": service.class_boundary(),
                "records": records, "rejected_rows": rejected}

    return app
