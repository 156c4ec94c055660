"""Models (shapes, time as the sequence axis, input gradients) and TorchModelDataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from kedro.io import DatasetError
from kedro.io.core import Version

from ehr_adversarial.attack import input_gradient_mode
from ehr_adversarial.datasets.torch_model import TorchModelDataset
from ehr_adversarial.models import (
    MODEL_CLASSES,
    build_model,
    check_model_matches_data,
    model_inputs,
)
from ehr_adversarial.models.hourly_summary import hourly_summary, summarise_measurements

N_HOURS, N_FEATURES, N_STATIC = 48, 7, 5


def make_config(architecture: str, **hyperparameters) -> dict:
    return {
        "architecture": architecture,
        "hyperparameters": hyperparameters,
        "feature_set": "toy",
        "feature_names": [f"f{i}" for i in range(N_FEATURES)],
        "static_names": [f"s{i}" for i in range(N_STATIC)],
        "n_hours": N_HOURS,
        "n_features": N_FEATURES,
        "n_static": N_STATIC,
    }


def make_batch(n: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(n, N_HOURS, N_FEATURES, generator=g) < 0.3
    return {
        "x": torch.rand(n, N_HOURS, N_FEATURES, generator=g),
        "mask": mask.float(),
        "delta": torch.rand(n, N_HOURS, N_FEATURES, generator=g),
        "static": torch.rand(n, N_STATIC, generator=g),
    }


CONFIGS = {
    "lstm_sun2018": make_config("lstm_sun2018"),
    "lstm_sun2018_bidirectional": make_config("lstm_sun2018", bidirectional=True),
    "lstm_sun2018_all_channels": make_config("lstm_sun2018", use_mask=True, use_delta=True, use_static=True,
                                             readout="pooled"),
    "lstm_pooled_input_summary": make_config("lstm_sun2018", use_static=True, readout="pooled",
                                             input_summary=["mean", "last"]),
    "lstm_pooled_measurement_summary": make_config("lstm_sun2018", use_static=True, readout="pooled",
                                                   input_summary=["mean", "min", "max", "last"],
                                                   measurement_summary=["measured_share", "hours_since_last"]),
    "dssm": make_config("dssm"),
    "dssm_values_only": make_config("dssm", use_mask=False, use_delta=False),
    "dssm_input_summary": make_config("dssm", num_layers=1, input_summary=["mean", "min", "max", "last"]),
}


@pytest.fixture(params=sorted(CONFIGS))
def model(request) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(CONFIGS[request.param]).eval()


def test_registry_knows_both_mortality_models():
    assert {"lstm_sun2018", "dssm"} <= set(MODEL_CLASSES)


def test_logits_have_shape_batch_by_two(model):
    last_linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    seen = []
    last_linear.register_forward_hook(lambda module, args, out: seen.append(out))
    logits = model(*model_inputs(model, make_batch(6)))
    assert logits.shape == (6, 2)
    # logits straight from the last Linear layer: no softmax inside the model
    assert torch.equal(logits, seen[-1])


def test_recurrence_runs_over_the_48_hours(model):
    """The LSTM reads hours as steps (earlier code ran it over features)."""
    assert model.lstm.batch_first
    expected_inputs = N_FEATURES * (1 + getattr(model, "use_mask", 0) + getattr(model, "use_delta", 0))
    assert model.lstm.input_size == expected_inputs


def test_permuting_hours_changes_the_output(model):
    batch = make_batch(3)
    reversed_time = {k: (v.flip(1) if v.dim() == 3 else v) for k, v in batch.items()}
    with torch.no_grad():
        original = model(*model_inputs(model, batch))
        permuted = model(*model_inputs(model, reversed_time))
    assert not torch.allclose(original, permuted, atol=1e-6)


def test_a_late_change_reaches_the_logits(model):
    batch = make_batch(2)
    changed = {k: v.clone() for k, v in batch.items()}
    changed["x"][:, 40, 0] += 0.5
    with torch.no_grad():
        assert not torch.allclose(model(*model_inputs(model, batch)), model(*model_inputs(model, changed)))


def test_eval_mode_is_deterministic_and_train_mode_uses_dropout():
    torch.manual_seed(0)
    model = build_model(make_config("lstm_sun2018", dropout=0.9)).eval()
    batch = make_batch(8)
    with torch.no_grad():
        assert torch.equal(model(batch["x"]), model(batch["x"]))
        model.train()
        assert not torch.equal(model(batch["x"]), model(batch["x"]))


def test_gradient_with_respect_to_the_input_in_eval_mode(model):
    batch = make_batch(3)
    x = batch["x"].clone().requires_grad_(True)
    with torch.no_grad():
        eval_logits = model.eval()(*model_inputs(model, batch))
    with input_gradient_mode(model) as m:
        logits = m(*model_inputs(m, {**batch, "x": x}))
        # the attack's logits: the same as in eval mode (dropout off)
        assert torch.allclose(logits, eval_logits, atol=1e-6)
        (logits[:, 1] - logits[:, 0]).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert x.grad.abs().sum() > 0
    # every hour influences the logits, the last ones too
    assert (x.grad.abs().sum(dim=(0, 2)) > 0).all()


def test_bidirectional_is_a_parameter():
    uni = build_model(make_config("lstm_sun2018"))
    bi = build_model(make_config("lstm_sun2018", bidirectional=True))
    assert not uni.lstm.bidirectional and bi.lstm.bidirectional
    assert bi.fc.in_features == 2 * uni.fc.in_features == 256


def test_unknown_architecture_and_hyperparameter_are_clear_errors():
    with pytest.raises(ValueError, match="unknown model architecture 'gru'.*lstm_sun2018"):
        build_model(make_config("gru"))
    with pytest.raises(ValueError, match="does not take hyperparameter.*hidden"):
        build_model(make_config("lstm_sun2018", hiden_size=3))


# ---------------------------------------------------------------- TorchModelDataset


def test_round_trip_gives_the_same_model_in_eval_mode(tmp_path, model):
    dataset = TorchModelDataset(filepath=str(tmp_path / "model.pt"), version=Version(None, None))
    model.config["probability_shift"] = 1.8
    dataset.save(model.train())
    loaded = dataset.load()
    assert not loaded.training
    assert type(loaded) is type(model)
    assert loaded.config == json.loads(json.dumps(model.config))
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name])
    batch = make_batch(3)
    with torch.no_grad():
        assert torch.equal(model.eval()(*model_inputs(model, batch)), loaded(*model_inputs(loaded, batch)))


def test_versions_accumulate_and_the_latest_loads(tmp_path):
    path = tmp_path / "m.pt"
    first = build_model(make_config("lstm_sun2018"))
    second = build_model(make_config("lstm_sun2018", hidden_size=16))
    TorchModelDataset(filepath=str(path), version=Version(None, "2026-01-01T00.00.00.000Z")).save(first)
    TorchModelDataset(filepath=str(path), version=Version(None, "2026-01-02T00.00.00.000Z")).save(second)
    assert len(list(path.iterdir())) == 2
    loaded = TorchModelDataset(filepath=str(path), version=Version(None, None)).load()
    assert loaded.lstm.hidden_size == 16


def test_file_is_weights_plus_json_config(tmp_path):
    path = tmp_path / "model.pt"
    TorchModelDataset(filepath=str(path)).save(build_model(make_config("dssm")))
    payload = torch.load(path, weights_only=True)
    assert set(payload) == {"config", "state_dict"}
    assert payload["config"]["architecture"] == "dssm"
    assert all(isinstance(v, torch.Tensor) for v in payload["state_dict"].values())


class _NotAWeight:
    pass


def test_loading_refuses_pickled_objects(tmp_path):
    path = tmp_path / "model.pt"
    model = build_model(make_config("lstm_sun2018"))
    torch.save({"config": model.config, "state_dict": model.state_dict(), "x": _NotAWeight()}, path)
    with pytest.raises(DatasetError, match="weights_only|Unsupported global|_NotAWeight"):
        TorchModelDataset(filepath=str(path)).load()


def test_weights_that_do_not_fit_the_config_are_rejected(tmp_path):
    path = tmp_path / "model.pt"
    model = build_model(make_config("lstm_sun2018"))
    config = {**model.config, "n_features": N_FEATURES + 1}
    torch.save({"config": config, "state_dict": model.state_dict()}, path)
    with pytest.raises(DatasetError, match="weights do not fit"):
        TorchModelDataset(filepath=str(path)).load()


def test_module_without_config_is_not_saved_and_leaves_no_file(tmp_path):
    with pytest.raises(DatasetError, match="no `config`"):
        TorchModelDataset(filepath=str(tmp_path / "m.pt")).save(torch.nn.Linear(2, 2))
    model = build_model(make_config("lstm_sun2018"))
    model.config["bad"] = object()
    with pytest.raises(DatasetError, match="not JSON-able"):
        TorchModelDataset(filepath=str(tmp_path / "m.pt")).save(model)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_save_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken_save(obj, file):
        file.write(b"half a model")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(Exception, match="disk full"):
        TorchModelDataset(filepath=str(tmp_path / "m.pt")).save(build_model(make_config("lstm_sun2018")))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def _bundle(n_features: int, n_static: int = N_STATIC) -> dict[str, np.ndarray]:
    return {"X": np.zeros((5, N_HOURS, n_features), np.float32), "static": np.zeros((5, n_static), np.float32)}


def test_model_and_data_of_other_shapes_name_both_shapes():
    config = build_model(make_config("lstm_sun2018")).config
    check_model_matches_data(config, _bundle(N_FEATURES))
    with pytest.raises(ValueError, match=r"expects X of shape \(N, 48, 7\).*has X of shape \(5, 48, 18\)"):
        check_model_matches_data(config, _bundle(18), data_name="sun2018 test")
    dssm = build_model(make_config("dssm")).config
    with pytest.raises(ValueError, match="5 static features, but .* 3 static"):
        check_model_matches_data(dssm, _bundle(N_FEATURES, n_static=3))


def test_model_and_data_with_other_feature_names_are_rejected():
    config = build_model(make_config("lstm_sun2018")).config
    spec = {"feature_set": "other", "feature_names": [f"g{i}" for i in range(N_FEATURES)]}
    with pytest.raises(ValueError, match="trained on feature set 'toy'.*feature set 'other'"):
        check_model_matches_data(config, _bundle(N_FEATURES), spec)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_one_training_step_and_input_gradients_on_cuda(name):
    device = torch.device("cuda")
    model = build_model(CONFIGS[name]).to(device).train()
    batch = {k: v.to(device) for k, v in make_batch(16).items()}
    y = torch.randint(0, 2, (16,), device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda")
    before = [p.detach().clone() for p in model.parameters()]
    with torch.autocast("cuda", dtype=torch.float16):
        loss = torch.nn.functional.cross_entropy(model(*model_inputs(model, batch)).float(), y)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    x = batch["x"].clone().requires_grad_(True)
    with input_gradient_mode(model) as m:
        m(*model_inputs(m, {**batch, "x": x}))[:, 1].sum().backward()
    assert x.grad.abs().sum() > 0


def test_the_default_lstm_is_the_papers_last_state_readout():
    torch.manual_seed(0)
    model = build_model(CONFIGS["lstm_sun2018"]).eval()
    assert model.inputs == ("x",)
    x = make_batch()["x"]
    _, (h_n, _) = model.lstm(x)
    expected = model.head(torch.relu(model.fc(torch.tanh(h_n[-1]))))
    torch.testing.assert_close(model(x), expected)


def test_lstm_channels_are_inputs_by_position_or_name_and_change_the_output():
    torch.manual_seed(0)
    model = build_model(CONFIGS["lstm_sun2018_all_channels"]).eval()
    assert model.inputs == ("x", "mask", "delta", "static")
    batch = make_batch()
    by_position = model(*model_inputs(model, batch))
    by_name = model(batch["x"], mask=batch["mask"], delta=batch["delta"], static=batch["static"])
    torch.testing.assert_close(by_position, by_name)
    for name in ("mask", "delta", "static"):
        changed = dict(batch, **{name: batch[name] + 1.0})
        assert not torch.allclose(model(*model_inputs(model, changed)), by_position), name
    partial = build_model(make_config("lstm_sun2018", use_delta=True)).eval()
    assert partial.inputs == ("x", "delta")
    assert partial(batch["x"], batch["delta"]).shape == (4, 2)
    with pytest.raises(ValueError, match="readout is 'attention'"):
        build_model(make_config("lstm_sun2018", readout="attention"))


def test_the_hourly_summary_is_each_features_mean_min_max_last_deviation_or_first_hour_in_the_order_asked():
    x = make_batch()["x"]
    expected = np.concatenate([x.numpy().mean(1), x.numpy().min(1), x.numpy().max(1), x.numpy()[:, -1]], axis=1)
    np.testing.assert_allclose(hourly_summary(x, ["mean", "min", "max", "last"]).numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(hourly_summary(x, ["last", "mean"]).numpy(),
                               np.concatenate([x.numpy()[:, -1], x.numpy().mean(1)], axis=1), rtol=1e-6)
    values = x.numpy()
    mad = np.abs(values - values.mean(1, keepdims=True)).mean(1)
    np.testing.assert_allclose(hourly_summary(x, ["mad", "first"]).numpy(),
                               np.concatenate([mad, values[:, 0]], axis=1), rtol=1e-5)
    # a feature that never changes (never measured: one imputed value) has deviation 0 and a finite gradient
    constant = torch.full((2, N_HOURS, N_FEATURES), 0.4, requires_grad=True)
    hourly_summary(constant, ["mad"]).sum().backward()
    assert torch.isfinite(constant.grad).all()
    with pytest.raises(ValueError, match=r"input_summary \['median'\] unknown; use any of mean, min, max, last"):
        build_model(make_config("lstm_sun2018", input_summary=["mean", "median"]))


def test_the_input_summary_reaches_the_classifier_beside_the_recurrent_read_out():
    torch.manual_seed(0)
    lstm = build_model(CONFIGS["lstm_pooled_input_summary"]).eval()
    batch = make_batch()
    outputs, (h_n, _) = lstm.lstm(batch["x"])
    read_out = torch.tanh(torch.cat([h_n[-1], outputs.mean(1), outputs.amax(1)], dim=-1))
    wide = torch.cat([read_out, batch["x"].mean(1), batch["x"][:, -1], batch["static"]], dim=-1)
    torch.testing.assert_close(lstm(*model_inputs(lstm, batch)), lstm.head(torch.relu(lstm.fc(wide))))

    dssm = build_model(CONFIGS["dssm_input_summary"]).eval()
    seen = []
    dssm.classifier[0].register_forward_hook(lambda module, args, out: seen.append(args[0]))
    dssm(*model_inputs(dssm, batch))
    torch.testing.assert_close(seen[-1][:, -4 * N_FEATURES:], hourly_summary(batch["x"], ["mean", "min", "max", "last"]))
    # the option is off by default: ehr_classification's and the paper's shapes are unchanged
    assert build_model(CONFIGS["dssm"]).classifier[0].in_features == 64 + 32
    assert build_model(CONFIGS["lstm_sun2018"]).fc.in_features == 128


def test_the_measurement_summary_is_each_features_share_of_measured_hours_and_last_delta_read_from_mask_and_delta():
    batch = make_batch()
    expected = np.concatenate([batch["mask"].numpy().mean(1), batch["delta"].numpy()[:, -1]], axis=1)
    np.testing.assert_allclose(summarise_measurements(batch, ["measured_share", "hours_since_last"]).numpy(), expected,
                               rtol=1e-6)
    np.testing.assert_allclose(summarise_measurements({"mask": batch["mask"] > 0}, ["measured_share"]).numpy(),
                               batch["mask"].numpy().mean(1), rtol=1e-6)  # a boolean mask counts as 0/1

    torch.manual_seed(0)
    lstm = build_model(CONFIGS["lstm_pooled_measurement_summary"]).eval()
    # the channels are inputs for the summary only: the recurrence still reads x alone
    assert lstm.inputs == ("x", "mask", "delta", "static")
    assert lstm.lstm.input_size == N_FEATURES
    outputs, (h_n, _) = lstm.lstm(batch["x"])
    read_out = torch.tanh(torch.cat([h_n[-1], outputs.mean(1), outputs.amax(1)], dim=-1))
    wide = torch.cat([read_out, hourly_summary(batch["x"], ["mean", "min", "max", "last"]),
                      torch.from_numpy(expected), batch["static"]], dim=-1)
    torch.testing.assert_close(lstm(*model_inputs(lstm, batch)), lstm.head(torch.relu(lstm.fc(wide))))
    # the mask's hourly pattern matters only through the share: moving a measurement to another hour changes nothing
    moved = dict(batch, mask=batch["mask"].roll(1, dims=1))
    torch.testing.assert_close(lstm(*model_inputs(lstm, moved))[:, 0], lstm(*model_inputs(lstm, batch))[:, 0])
    share_only = build_model(make_config("lstm_sun2018", measurement_summary=["measured_share"]))
    assert share_only.inputs == ("x", "mask")
    with pytest.raises(ValueError, match=r"measurement_summary \['count'\] unknown; use any of measured_share, "
                                         r"hours_since_last"):
        build_model(make_config("lstm_sun2018", measurement_summary=["count"]))
