"""The model server: a record sent over HTTP becomes exactly the model input the study builds for it, gets the
study's probability, and its susceptible locations come from the study's attack; bad requests are 422 with a
message naming the record, field or line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient
from kedro.io import DataCatalog

from ehr_adversarial.features.model_input import model_input_of_records
from ehr_adversarial.serving import ModelService, create_app
from ehr_adversarial.serving.service import MAX_ATTACKED_RECORDS
from tests.conftest import physionet2012_record_file, project_parameters

# set-b records of the test split: one death, one survivor, and one the study counts as near-empty.
RECORDS = (142675, 142680, 142731)


def random_model(spec: dict, seed: int = 0) -> torch.nn.Module:
    """An untrained lstm_sun2018 of the spec's shape: the server must reproduce whatever the model computes."""
    from ehr_adversarial.models import build_model

    torch.manual_seed(seed)
    config = {"architecture": "lstm_sun2018", "hyperparameters": {"hidden_size": 16, "fc_size": 8, "dropout": 0.0},
              "feature_set": spec["feature_set"], "feature_names": spec["feature_names"],
              "static_names": spec["static_names"], "n_hours": spec["n_hours"], "n_features": len(spec["feature_names"]),
              "n_static": len(spec["static_names"]), "probability_shift": 0.3,
              "calibration": {"method": "platt", "slope": 0.8, "intercept": -0.2, "n": 800}}
    return build_model(config).eval()


@pytest.fixture(scope="module")
def served(physionet2012_features: DataCatalog) -> tuple[ModelService, dict]:
    """A small LSTM trained briefly on the real train split (a model with a signal, so the attack can flip it)."""
    from ehr_adversarial.training.torch_loop import fit, to_tensors

    params = project_parameters()
    spec = physionet2012_features.load("features.sun2018.feature_spec")
    train, validation = (to_tensors(physionet2012_features.load(f"features.sun2018.model_input_{split}"),
                                    torch.device("cpu")) for split in ("train", "validation"))
    settings = {"batch_size": 128, "max_epochs": 3, "patience": 3, "monitor": "loss", "class_weight": "balanced",
                "amp": False, "optimizer": {"lr": 0.01, "betas": [0.9, 0.999], "weight_decay": 0.0}, "grad_clip": 5.0}
    model, _ = fit(random_model(spec), train, validation, settings, torch.Generator().manual_seed(0))
    service = ModelService(name="lstm_sun2018", model=model.eval(), feature_spec=spec, threshold=0.4,
                           threshold_rule="min_se_ppv", attack=params["attack"]["physionet2012"],
                           ingestion=params["ingestion"]["physionet2012"], source="physionet2012", device="cpu")
    return service, physionet2012_features.load("features.sun2018.model_input_test")


def study_probability(service: ModelService, bundle: dict, record_ids) -> np.ndarray:
    """P(death) of the study's own model input for these records, as the training stage computes it."""
    from ehr_adversarial.training.torch_loop import death_probability, predict_logits, to_tensors

    rows = pd.Index(bundle["record_id"]).get_indexer(list(record_ids))
    logits = predict_logits(service.model, to_tensors({k: np.asarray(v)[rows] for k, v in bundle.items()},
                                                      torch.device("cpu")), 256)
    return death_probability(logits, service.model.config["probability_shift"], service.model.config["calibration"])


def json_records(timeseries: pd.DataFrame, static: pd.DataFrame, record_ids, columns) -> list[dict]:
    """Records of the study's ingestion tables as the JSON the server takes."""
    static = static.set_index("record_id")
    return [{"record_id": int(r),
             "static": {k: (None if pd.isna(static.at[r, k]) else static.at[r, k]) for k in columns},
             "measurements": [{"minutes": int(m), "parameter": p, "value": float(v)} for m, p, v in
                              timeseries.loc[timeseries["record_id"] == r, ["minutes", "parameter", "value"]]
                              .itertuples(index=False)]}
            for r in record_ids]


def test_records_sent_one_by_one_get_exactly_the_model_input_of_the_study(physionet2012_features, physionet2012_dir):
    """The hourly binning, forward fill, gap fill, train-split scaling and statics of a record file read on its own
    equal the study's tensors of that record (built with all 8000 records)."""
    params = project_parameters()
    for feature_set in ("sun2018", "full"):
        spec = physionet2012_features.load(f"features.{feature_set}.feature_spec")
        bundle = physionet2012_features.load(f"features.{feature_set}.model_input_test")
        service = ModelService(name="m", model=random_model(spec), feature_spec=spec,
                               ingestion=params["ingestion"]["physionet2012"], source="physionet2012", device="cpu")
        files = {f"{r}.txt": physionet2012_record_file(physionet2012_dir, r) for r in RECORDS}
        timeseries, static, _ = service.physionet2012_records(files)
        served = model_input_of_records(timeseries, static, spec)
        rows = pd.Index(bundle["record_id"]).get_indexer(list(RECORDS))
        assert (rows >= 0).all()
        np.testing.assert_array_equal(served["record_id"], RECORDS)
        for key in ("X", "mask", "delta", "static"):
            np.testing.assert_array_equal(served[key], np.asarray(bundle[key])[rows], err_msg=f"{feature_set} {key}")


def test_a_record_file_is_read_by_ingestions_rules(served, physionet2012_features, physionet2012_dir):
    service, _ = served
    timeseries, static, rejected = service.physionet2012_records({"142675.txt": physionet2012_record_file(physionet2012_dir, 142675)})
    study = physionet2012_features.load("ingestion.timeseries")
    expected = study[study["record_id"] == 142675].reset_index(drop=True)
    pd.testing.assert_frame_equal(timeseries.reset_index(drop=True), expected, check_dtype=False)
    study_static = physionet2012_features.load("ingestion.static").set_index("record_id").loc[142675]
    assert static.iloc[0][["age", "gender", "height", "weight"]].tolist() == pytest.approx(
        study_static[["age", "gender", "height", "weight"]].tolist(), nan_ok=True)
    assert static.iloc[0]["icu_type"] == study_static["icu_type"]
    assert set(rejected.columns) >= {"line", "parameter", "value", "reason"}


def test_predict_over_http_gives_the_studys_probability_for_files_and_json(served, physionet2012_dir,
                                                                         physionet2012_features):
    service, bundle = served
    client = TestClient(create_app(service))
    assert client.get("/health").json() == {"status": "ok", "model": "lstm_sun2018"}
    described = client.get("/model").json()
    assert [f["name"] for f in described["features"]] == service.feature_spec["feature_names"]
    assert described["threshold"] == 0.4 and described["accepts_physionet2012_files"]
    paths = client.get("/openapi.json").json()["paths"]  # what /docs shows
    assert set(paths) == {"/health", "/model", "/predict", "/predict/physionet2012", "/susceptibility",
                          "/susceptibility/physionet2012"}

    expected = study_probability(service, bundle, RECORDS)
    for record_id, p in zip(RECORDS, expected, strict=True):
        answer = client.post("/predict/physionet2012", content=physionet2012_record_file(physionet2012_dir, record_id),
                             headers={"content-type": "text/plain"})
        assert answer.status_code == 200, answer.text
        (prediction,) = answer.json()["predictions"]
        assert prediction["record_id"] == record_id
        assert prediction["p_death"] == pytest.approx(p, rel=1e-6)
        assert prediction["high_risk"] == bool(p >= 0.4)

    # The same records as JSON measurements (the ingestion contract) give the same probabilities.
    records = json_records(physionet2012_features.load("ingestion.timeseries"),
                           physionet2012_features.load("ingestion.static"), RECORDS,
                           ["age", "gender", "height", "weight", "icu_type"])
    answer = client.post("/predict", json={"records": records})
    assert answer.status_code == 200, answer.text
    got = [p["p_death"] for p in answer.json()["predictions"]]
    assert got == pytest.approx(expected.tolist(), rel=1e-6)


def test_susceptibility_flips_the_models_decision_with_the_cells_it_reports(served, physionet2012_dir):
    service, bundle = served
    client = TestClient(create_app(service))
    answer = client.post("/susceptibility/physionet2012", content=physionet2012_record_file(physionet2012_dir, 142680),
                         headers={"content-type": "text/plain"})
    assert answer.status_code == 200, answer.text
    (record,) = answer.json()["records"]
    assert record["flipped"], record
    cells = pd.DataFrame(record["cells"])
    assert len(cells) > 0 and record["l1"] > 0
    # The predicted class is the argmax of the logits, P(death) on the class boundary's side.
    decided_death = record["predicted_class"] == "death"
    boundary = answer.json()["class_boundary_p_death"]
    assert (record["p_death"] > boundary) == decided_death and (record["p_death_after"] > boundary) != decided_death
    rows = pd.Index(bundle["record_id"]).get_indexer([142680])
    x = torch.as_tensor(np.asarray(bundle["X"])[rows])
    spec = service.feature_spec
    # Rebuild the perturbed record from the reported cells (clinical units → scaled) and check the flip.
    for cell in cells.itertuples(index=False):
        f = spec["feature_names"].index(cell.feature)
        p05, p95 = spec["scaler"][cell.feature]["p05"], spec["scaler"][cell.feature]["p95"]
        assert cell.original == pytest.approx(p05 + float(x[0, cell.hour, f]) * (p95 - p05), rel=1e-5, abs=1e-6)
        x[0, cell.hour, f] += cell.change / (p95 - p05)
    inputs = {k: torch.as_tensor(np.asarray(bundle[k])[rows]).float() for k in ("mask", "delta", "static")}
    with torch.no_grad():
        logits = service.model(x.float(), inputs["mask"], inputs["delta"], inputs["static"])
    assert bool(logits[0, 1] > logits[0, 0]) != decided_death
    # largest change first (scaled units)
    scaled = [abs(c.change / (spec["scaler"][c.feature]["p95"] - spec["scaler"][c.feature]["p05"]))
              for c in cells.itertuples(index=False)]
    assert scaled == sorted(scaled, reverse=True)


def test_the_measured_mode_changes_only_measured_values(served, physionet2012_dir):
    service, _ = served
    client = TestClient(create_app(service))
    answer = client.post("/susceptibility/physionet2012", params={"mode": "measured"},
                         content=physionet2012_record_file(physionet2012_dir, 142680), headers={"content-type": "text/plain"})
    assert answer.status_code == 200, answer.text
    (record,) = answer.json()["records"]
    assert answer.json()["mode"] == "measured" and record["cells"]
    # A changed measurement moves the forward-filled hours after it by the same amount: the first changed hour of
    # each feature is measured.
    cells = pd.DataFrame(record["cells"])
    assert cells.sort_values("hour").groupby("feature")["measured"].first().all()
    answer = client.post("/susceptibility/physionet2012", params={"mode": "nearby"},
                         content=physionet2012_record_file(physionet2012_dir, 142680), headers={"content-type": "text/plain"})
    assert answer.status_code == 422


def test_bad_requests_are_422_naming_what_to_fix(served, physionet2012_dir):
    service, _ = served
    client = TestClient(create_app(service))
    text = physionet2012_record_file(physionet2012_dir, 142675).decode()

    def post_file(body: str, **params) -> tuple[int, str]:
        answer = client.post("/predict/physionet2012", content=body.encode(), params=params,
                             headers={"content-type": "text/plain"})
        return answer.status_code, str(answer.json()["detail"])

    lines = text.splitlines()
    broken = "\n".join([*lines[:5], "1x:30,HR,80", *lines[5:]])
    status, detail = post_file(broken)
    assert status == 422 and "142675.txt line 6" in detail and "hh:mm" in detail
    status, detail = post_file("Time;Parameter;Value\n00:00;HR;80\n", name="140001.txt")
    assert status == 422 and "140001.txt line 1" in detail and "header" in detail
    status, detail = post_file("Time;Parameter;Value\n00:00;HR;80\n", name="mine.txt")
    assert status == 422 and "mine.txt" in detail and "RecordID" in detail
    status, detail = post_file("\n".join(line for line in lines if "RecordID" not in line))
    assert status == 422 and "RecordID" in detail
    status, detail = post_file("   ")
    assert status == 422 and "empty" in detail

    def post_json(records) -> tuple[int, str]:
        answer = client.post("/predict", json={"records": records})
        return answer.status_code, str(answer.json()["detail"])

    status, detail = post_json([{"record_id": 1, "measurements": [{"minutes": 5, "parameter": "Sodium", "value": 1}]}])
    assert status == 422 and "['Sodium']" in detail and "Na" in detail
    status, detail = post_json([{"record_id": 3, "measurements": [{"minutes": 5, "parameter": "Temp", "value": 98.6}]}])
    assert status == 422 and "record 3: Temp = 98.6 at minute 5 is outside [25, 45]" in detail and "°C" in detail
    status, detail = post_json([{"record_id": 1, "static": {"icu_type": "NICU"}}])
    assert status == 422 and "record 1" in detail and "NICU" in detail and "MICU" in detail
    status, detail = post_json([{"record_id": 1}, {"record_id": 1}])
    assert status == 422 and "record_id 1 appears twice" in detail
    status, detail = post_json([{"record_id": 1, "measurements": [{"minutes": -3, "parameter": "HR", "value": 80}]}])
    assert status == 422 and "minutes" in detail
    status, detail = post_json([])
    assert status == 422
    answer = client.post("/susceptibility", json={"records": [{"record_id": i} for i in range(MAX_ATTACKED_RECORDS + 1)]})
    assert answer.status_code == 422 and f"at most {MAX_ATTACKED_RECORDS}" in answer.json()["detail"]


def test_a_record_without_measurements_is_the_train_medians_and_is_served(served):
    """Nothing measured: every cell is the gap fill and every static the train median, as in the study."""
    service, _ = served
    client = TestClient(create_app(service))
    answer = client.post("/predict", json={"records": [{"record_id": 7}]})
    assert answer.status_code == 200, answer.text
    assert 0 < answer.json()["predictions"][0]["p_death"] < 1


def test_mimic3_records_sent_as_json_get_the_studys_tensors_and_its_valid_ranges(mimic3_features):
    params = project_parameters()
    spec = mimic3_features.load("features.sun2018.feature_spec")
    bundle = mimic3_features.load("features.sun2018.model_input_test")
    service = ModelService(name="lstm_sun2018", model=random_model(spec), feature_spec=spec,
                           ingestion=params["ingestion"]["mimic3"], source="mimic3", device="cpu")
    timeseries, static = mimic3_features.load("ingestion.timeseries"), mimic3_features.load("ingestion.static")
    record_ids = np.asarray(bundle["record_id"])[:5]
    columns = [*spec["static_scaler"], *spec["static_one_hot"]]
    client = TestClient(create_app(service))
    answer = client.post("/predict", json={"records": json_records(timeseries, static, record_ids, columns)})
    assert answer.status_code == 200, answer.text
    got = [p["p_death"] for p in answer.json()["predictions"]]
    assert got == pytest.approx(study_probability(service, bundle, record_ids).tolist(), rel=1e-6)
    assert not client.get("/model").json()["accepts_physionet2012_files"]

    def post(parameter: str, value: float) -> tuple[int, str]:
        answer = client.post("/predict", json={"records": [
            {"record_id": 9, "measurements": [{"minutes": 60, "parameter": parameter, "value": value}]}]})
        return answer.status_code, str(answer.json().get("detail", ""))

    assert post("Na", 200.0)[0] == 200  # valid: {above: 0, at_most: 200}
    status, detail = post("Na", 200.5)
    assert status == 422 and "record 9: Na = 200.5 at minute 60 is outside (0, 200]" in detail
    status, detail = post("HR", 300.0)  # valid: {above: 0, below: 300}
    assert status == 422 and "outside (0, 300)" in detail and "bpm" in detail
    status, detail = post("HR", 0.0)
    assert status == 422 and "outside (0, 300)" in detail
    status, detail = post("Heart Rate", 80.0)
    assert status == 422 and "['Heart Rate']" in detail and "mimic3" in detail
    answer = client.post("/predict/physionet2012", content=b"Time,Parameter,Value\n00:00,RecordID,1\n",
                         headers={"content-type": "text/plain"})
    assert answer.status_code == 422 and "trained on mimic3" in answer.json()["detail"]
