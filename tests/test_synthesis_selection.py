"""benchmarks/synthesis_selection.py: candidate overrides (parsing, merging, validation), the caps and the
selection rule as pure functions; and one end-to-end call on a tiny fixture bundle that never reads the test
split."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ehr_adversarial.datasets.tensors import TensorBundleDataset
from ehr_adversarial.synthesis.settings import EhrdiffSettings, KmimicSettings

# kedro's config loader, through the project's settings, registers a resolver the deprecated way
pytestmark = pytest.mark.filterwarnings("ignore:register_new_resolver:UserWarning")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
VERSION = "2026-01-01T00.00.00.000Z"


def _load_script():
    path = PROJECT_ROOT / "benchmarks" / "synthesis_selection.py"
    spec = importlib.util.spec_from_file_location("synthesis_selection", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


selection = _load_script()

BLOCK = {"n_samples": "train", "lattice": True, "label": "condition", "hidden_dims": [256, 256], "max_steps": 1500,
         "sampler": {"guidance": 2.0, "num_steps": 32}}


def test_candidates_parse_as_dotted_overrides_with_yaml_values():
    parse = selection.parse_candidate
    assert parse("") == parse("  ") == {}
    assert parse("sampler.guidance=0,label=column") == {"sampler.guidance": 0, "label": "column"}
    assert parse("hidden_dims=[512, 512], time_dim=256") == {"hidden_dims": [512, 512], "time_dim": 256}
    assert parse("learning_rate=1e-3,top_k=null,center=false") == {"learning_rate": 1e-3, "top_k": None, "center": False}
    assert parse("{sampler: {guidance: 1, num_steps: 16}, label: column}") == {
        "sampler.guidance": 1, "sampler.num_steps": 16, "label": "column"}
    assert parse("sampler={guidance: 3}") == {"sampler.guidance": 3}
    assert parse("lattice={}") == {"lattice": {}}


@pytest.mark.parametrize(("text", "message"), [
    ("sampler.guidance", "is not `key=value`"),
    ("label=column,label=condition", "sets 'label' twice"),
    ("sampler={guidance: 1},sampler.guidance=2", "twice"),
    ("hidden_dims=[1, 2", "unbalanced"),
    ("{label: column", "not valid YAML"),
    ("sampler=1,sampler.guidance=2", "sets both 'sampler' and 'sampler.guidance'"),
])
def test_malformed_candidates_are_errors(text, message):
    with pytest.raises(selection.SelectionError, match=message):
        selection.parse_candidate(text)


def test_overrides_merge_into_a_copy_of_the_block():
    merged = selection.merge_overrides(BLOCK, {"sampler.guidance": 0, "lattice.max_levels": 50, "hidden_dims": [64]})
    assert merged["sampler"] == {"guidance": 0, "num_steps": 32}
    assert merged["lattice"] == {"max_levels": 50}  # `true` became a mapping of thresholds
    assert merged["hidden_dims"] == [64]
    assert BLOCK["sampler"]["guidance"] == 2.0 and BLOCK["lattice"] is True  # the configured block is untouched


def test_unknown_keys_are_an_error_naming_the_key_and_the_known_keys():
    known = selection.known_keys(BLOCK, EhrdiffSettings)
    # the block's keys, and the settings model's even where the block does not spell them out
    assert {"sampler.guidance", "hidden_dims", "lattice.max_levels", "temporal.d_model", "time_basis"} <= set(known)
    with pytest.raises(selection.SelectionError) as error:
        selection.validate_overrides({"sampler.guidence": 1}, BLOCK, EhrdiffSettings, "synthesis.x.ehrdiff")
    message = str(error.value)
    assert "unknown setting 'sampler.guidence' for synthesis.x.ehrdiff" in message
    assert "did you mean sampler.guidance" in message and "known keys: " in message and "label_dropout" in message
    selection.validate_overrides({"sampler.guidance": 1, "lattice.coverage": 0.9}, BLOCK, EhrdiffSettings, "x")
    with pytest.raises(selection.SelectionError, match="unknown setting 'depth'"):
        selection.validate_overrides({"depth": 3}, BLOCK, None, "x")  # without a model: the block's keys only


def test_the_configured_blocks_accept_known_keys_and_refuse_bad_values():
    parameters = selection.project_parameters(None)["parameters"]
    ehrdiff = parameters["synthesis"]["physionet2012"]["ehrdiff"]
    overrides, settings = selection.resolve_candidate("sampler.guidance=0,label=column", ehrdiff, EhrdiffSettings, "e")
    assert overrides == {"sampler.guidance": 0, "label": "column"}
    assert settings["sampler"]["guidance"] == 0 and settings["sampler"]["num_steps"] == ehrdiff["sampler"]["num_steps"]
    with pytest.raises(selection.SelectionError, match="sampler.guidance: Input should be greater than or equal to 0"):
        selection.resolve_candidate("sampler.guidance=-1", ehrdiff, EhrdiffSettings, "e")
    kmimic = parameters["synthesis"]["physionet2012"]["kmimic"]
    with pytest.raises(selection.SelectionError, match="unknown setting 'temporal_vae.depth'"):
        selection.resolve_candidate("temporal_vae.depth=2", kmimic, KmimicSettings, "k")


def test_caps_bound_every_max_steps_and_the_sample_count():
    block = {"n_samples": "train", "static_vae": {"max_steps": 3000}, "temporal_vae": {"max_steps": 10},
             "latent_gan": {"max_steps": 1500}}
    capped = selection.apply_caps(block, max_steps=20, n_samples=100, n_train=3200)
    assert [capped[k]["max_steps"] for k in ("static_vae", "temporal_vae", "latent_gan")] == [20, 10, 20]
    assert capped["n_samples"] == 100 and block["static_vae"]["max_steps"] == 3000
    assert selection.apply_caps({"n_samples": "train", "max_steps": 5}, None, 9999, 50) == {"n_samples": 50, "max_steps": 5}
    assert selection.apply_caps(block, None, None, 1) == block


def test_selection_rule_prefers_the_earlier_candidate_and_skips_failures():
    def row(ratio, ks, rate):
        return {"utility": {"mean_flat_ratio_auroc": ratio},
                "fidelity": {"ks_mean": ks, "pearson_r_means": 0.9, "detection_auc": None, "label_rate": rate}}

    rows = [row(0.8, 0.3, 0.2), {"error": "ValueError: boom"}, row(0.9, 0.2, 0.14), row(0.9, 0.1, 0.137)]
    assert selection.select(rows, "tstr_ratio", 0.138) == (2, [0.8, None, 0.9, 0.9])
    assert selection.select(rows, "ks_mean", 0.138)[0] == 3
    assert selection.select(rows, "label_rate", 0.138)[0] == 3
    assert selection.select(rows, "detection_auc", 0.138) == (None, [None] * 4)


# ------------------------------------------------------------------------------ end to end


def _bundle(n: int, n_features: int, seed: int, start_id: int) -> dict[str, np.ndarray]:
    """A model_input bundle shaped as the features pipeline writes it; deaths raise feature 0."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    y[:2] = [0, 1]
    x = rng.random((n, 48, n_features)) * 0.6
    x[:, 24:, 0] += 0.3 * y[:, None]
    mask = rng.random((n, 48, n_features)) < 0.4
    return {"X": x.astype(np.float32), "mask": mask, "delta": np.zeros_like(x, dtype=np.float32),
            "static": rng.random((n, 3)).astype(np.float32), "y": y,
            "record_id": np.arange(start_id, start_id + n, dtype=np.int64), "group": np.array(["a"] * n)}


@pytest.fixture
def features_output(tmp_path: Path) -> Path:
    """A data folder holding what the features pipeline writes for physionet2012/full, tiny; the test
    split's bundle is not a bundle at all, so reading it would fail."""
    data = tmp_path / "data"
    model_input = data / "05_model_input" / "physionet2012" / "features" / "full"
    feature = data / "04_feature" / "physionet2012" / "features"
    bundles = {"train": _bundle(120, 4, 0, 1000), "validation": _bundle(60, 4, 1, 2000)}
    for split, bundle in bundles.items():
        path = model_input / f"model_input_{split}.npz" / VERSION / f"model_input_{split}.npz"
        path.parent.mkdir(parents=True)
        TensorBundleDataset(filepath=str(path)).save(bundle)
    test = model_input / "model_input_test.npz" / VERSION / "model_input_test.npz"
    test.parent.mkdir(parents=True)
    test.write_text("the test split must not be read")
    names = [f"f{i}" for i in range(4)]
    spec = {"feature_set": "full", "feature_names": names, "static_names": ["s0", "s1", "s2"], "static_one_hot": {}, "n_hours": 48,
            "scaler": {n: {"p05": 0.0, "p95": 1.0, "fill": 0.3, "median": 0.3} for n in names}}
    path = feature / "full" / "feature_spec.json" / VERSION / "feature_spec.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(spec))
    ids = np.r_[bundles["train"]["record_id"], bundles["validation"]["record_id"], np.arange(3000, 3050)]
    splits = pd.DataFrame({"record_id": ids, "split": ["train"] * 120 + ["validation"] * 60 + ["test"] * 50,
                           "group": "a", "fold": -1})
    path = feature / "splits.parquet" / VERSION / "splits.parquet"
    path.parent.mkdir(parents=True)
    splits.to_parquet(path)
    return data


def test_one_selection_end_to_end_on_a_tiny_bundle(features_output: Path, monkeypatch, capsys):
    read = []
    load_file = selection.load_file
    monkeypatch.setattr(selection, "load_file", lambda path: read.append(str(path)) or load_file(path))
    folder = selection.main(["--generator", "ehrdiff", "--data", str(features_output), "--max-steps", "3",
                             "--n-samples", "80", "--candidate", "", "--candidate", "sampler.guidance=0,sampler.num_steps=4"])
    assert folder.parent == features_output / "08_reporting" / "physionet2012" / "synthesis_selection" / "ehrdiff"
    report = json.loads((folder / "selection.json").read_text())
    markdown = (folder / "selection.md").read_text()
    assert markdown in capsys.readouterr().out
    # candidate 1's row, bold with "(chosen)" when the rule picks it
    assert any(line.startswith("| 1 | ") and "`sampler.guidance=0,sampler.num_steps=4`" in line for line in markdown.splitlines())
    assert read and not any("model_input_test" in path for path in read)
    assert not any("test" in name for name in report["inputs"])
    assert report["evaluation"]["split"] == "validation" and report["evaluation"]["n_validation"] == 60
    assert report["inputs"]["features.full.model_input_train"]["version"] == VERSION
    assert report["seed"] == 2012 and report["torch_threads"] >= 1 and report["machine"]["platform"]
    first, second = report["candidates"]
    assert "error" not in first and "error" not in second, (first.get("error"), second.get("error"))
    assert second["settings"]["sampler"]["guidance"] == 0 and second["settings"]["max_steps"] == 3
    assert first["n_synthetic"] == 80 and first["settings"]["n_samples"] == 80
    assert set(first["utility"]["models"]) == {"logistic_regression", "gradient_boosting"}
    assert 0 <= first["fidelity"]["detection_auc"] <= 1 and report["chosen"] in (0, 1)
    # which variables are measured together, real vs synthetic
    assert 0 <= first["fidelity"]["co_measurement"]["mean_abs_diff"] <= 1
    assert len(first["fidelity"]["co_measurement"]["pairs"]) == 5
    # a second run gets a folder of its own; with the pipeline's whole fidelity evaluation, the table names the
    # kind of column that gives the candidate away most
    again = selection.main(["--generator", "ehrdiff", "--data", str(features_output), "--max-steps", "1",
                            "--n-samples", "40", "--full-fidelity"])
    assert again != folder and (folder / "selection.json").exists()
    (row,) = json.loads((again / "selection.json").read_text())["candidates"]
    kinds = row["fidelity"]["evaluate_fidelity"]["discriminator"]["per_group"]["groups"]
    assert row["fidelity"]["most_telling_kind"] == kinds[0]["group"]
    lines = (again / "selection.md").read_text().splitlines()
    header, first_row = next(line for line in lines if line.startswith("| # |")), next(line for line in lines if line.startswith("| 0 |"))
    assert "most telling kind of column (AUC)" in header and header.count("|") == first_row.count("|")
    assert f"{kinds[0]['group']} (" in first_row


def test_candidates_that_differ_only_in_the_post_processing_share_one_generator_run(features_output: Path, monkeypatch):
    calls = []
    generate = selection.generate

    def counting_generate(generator, settings, *args, **kwargs):
        calls.append(settings["lattice"])
        return generate(generator, settings, *args, **kwargs)

    monkeypatch.setattr(selection, "generate", counting_generate)
    folder = selection.main(["--generator", "kmimic", "--data", str(features_output), "--max-steps", "2",
                             "--n-samples", "60", "--no-detection", "--candidate", "lattice=false",
                             "--candidate", "lattice.observation_counts=training", "--candidate", "value_noise=none"])
    assert calls == [False, False]  # one unsnapped run for the first two candidates, one for the third
    rows = json.loads((folder / "selection.json").read_text())["candidates"]
    assert [row["generator_run_of"] for row in rows] == [0, 0, 2]
    assert "| #0's | #0's + " in (folder / "selection.md").read_text()
    assert rows[0]["fidelity"]["ks_mean"] != rows[1]["fidelity"]["ks_mean"]
    # the unsnapped run snapped afterwards is what the stages give with the candidate's own setting
    from ehr_adversarial.synthesis import stages

    parameters = selection.project_parameters(None)["parameters"]
    inputs = selection.load_inputs(features_output, "physionet2012", "full", [])
    settings = selection.apply_caps(selection.merge_overrides(parameters["synthesis"]["physionet2012"]["kmimic"],
                                                              {"lattice.observation_counts": "training"}), 2, 60, 120)
    direct = generate("kmimic", settings, inputs, parameters, "physionet2012", "full", None, 2012, "cpu").synthetic
    raw = generate("kmimic", {**settings, "lattice": False}, inputs, parameters, "physionet2012", "full", None, 2012, "cpu").synthetic
    snapped = stages.snap_to_train_lattice({k: np.array(v, copy=True) for k, v in raw.items()}, inputs.train,
                                           inputs.feature_spec, settings)
    for key in ("X", "mask", "delta", "static", "y"):
        np.testing.assert_array_equal(snapped[key], direct[key])


def test_a_missing_bundle_names_the_path_and_the_command(tmp_path: Path, capsys):
    with pytest.raises(SystemExit):
        selection.main(["--generator", "kmimic", "--data", str(tmp_path)])
    error = capsys.readouterr().err
    assert "features.full.model_input_train" in error and "model_input_train.npz/<version>/model_input_train.npz" in error
    assert "kedro run --pipelines ingestion,features" in error
