"""SynEHRgy tokenizer: known token sequences, round trips (hand-made and real PhysioNet records),
unseen input, lenient decoding of generated sequences."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog

from ehr_adversarial.synthesis.tokenizer import (
    EOS,
    UNK,
    RecordTokenizer,
    corpus_sequences,
    fit_binning,
    sequences_corpus,
)


def _timeseries(rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["record_id", "minutes", "parameter", "value"])
    return frame.astype({"record_id": "int64", "minutes": "int32", "value": "float64"})


HAND_TS = _timeseries(
    [
        (1, 0, "HR", 80.0),
        (1, 0, "Na", 140.0),
        (1, 130, "HR", 90.0),   # hour 2
        (1, 200, "HR", 100.0),  # hour 3
        (2, 30, "HR", 70.0),    # hour 0
    ]
)
HAND_STATIC = pd.DataFrame(
    {
        "record_id": [1, 2],
        "age": [60.0, 70.0],
        "height": [np.nan, 170.0],
        "weight": [80.0, 60.0],
        "gender": [1.0, 0.0],
        "icu_type": ["MICU", "CCU"],
        "label": [1, 0],
    }
)


def _hand_tokenizer(**kwargs) -> RecordTokenizer:
    # two uniform bins over the full range (no trimming): HR 70..100 splits at 85
    return RecordTokenizer.fit(HAND_TS, HAND_STATIC, n_bins=2, binning="uniform", trim_quantiles=(0.0, 1.0), **kwargs)


def _strings(tokenizer: RecordTokenizer, corpus) -> list[list[str]]:
    return [[tokenizer.vocab[t] for t in seq] for seq in corpus_sequences(corpus)]


def test_hand_made_records_give_the_expected_tokens():
    tokenizer = _hand_tokenizer()
    corpus = tokenizer.tokenize(HAND_TS, HAND_STATIC)
    # HR bins: {70, 80} → lower median 70, {90, 100} → 90; Na one value; gaps since the previous step
    # on the hourly grid: 0 (admission), 120, 60 minutes. The first gap bin decodes to 0.
    assert _strings(tokenizer, corpus) == [
        ["<s>", "age:60", "height:nan", "weight:80", "gender:1.0", "icu_type:MICU", "label:1",
         "HR:70", "Na:140", "gap:0min", "HR:90", "gap:120min", "HR:90", "gap:60min", "</s>"],
        ["<s>", "age:70", "height:170", "weight:60", "gender:0.0", "icu_type:CCU", "label:0",
         "HR:70", "gap:0min", "</s>"],
    ]
    assert corpus["record_id"].tolist() == [1, 2]
    assert corpus["offsets"].tolist() == [0, 15, 25]


def test_hand_made_records_round_trip_to_bin_representatives():
    tokenizer = _hand_tokenizer()
    timeseries, static, codes = tokenizer.detokenize(tokenizer.tokenize(HAND_TS, HAND_STATIC))
    expected = _timeseries([(1, 0, "HR", 70.0), (1, 0, "Na", 140.0), (1, 120, "HR", 90.0), (1, 180, "HR", 90.0), (2, 0, "HR", 70.0)])
    pd.testing.assert_frame_equal(timeseries, expected)
    assert static["record_id"].tolist() == [1, 2]
    assert static["age"].tolist() == [60.0, 70.0]
    assert np.isnan(static["height"].iloc[0]) and static["height"].iloc[1] == 170.0
    assert static["gender"].tolist() == [1.0, 0.0] and static["gender"].dtype == np.float64
    assert static["icu_type"].tolist() == ["MICU", "CCU"]
    assert static["label"].tolist() == [1, 0]
    assert codes.empty


def test_tokenizer_survives_json_and_tokenizes_identically():
    tokenizer = _hand_tokenizer()
    again = RecordTokenizer.from_dict(json.loads(json.dumps(tokenizer.to_dict())))
    assert again.vocab == tokenizer.vocab
    for key, value in tokenizer.tokenize(HAND_TS, HAND_STATIC).items():
        np.testing.assert_array_equal(again.tokenize(HAND_TS, HAND_STATIC)[key], value)


def test_codes_become_sorted_code_tokens_after_the_label():
    codes = pd.DataFrame({"record_id": [1, 1, 2, 1], "code": ["428", "038", "428", "428"]})
    tokenizer = RecordTokenizer.fit(HAND_TS, HAND_STATIC, codes, n_bins=2, binning="uniform", trim_quantiles=(0.0, 1.0))
    strings = _strings(tokenizer, tokenizer.tokenize(HAND_TS, HAND_STATIC, codes))
    assert strings[0][6:9] == ["label:1", "code:038", "code:428"]
    assert strings[1][6:8] == ["label:0", "code:428"]
    _, _, decoded = tokenizer.detokenize(tokenizer.tokenize(HAND_TS, HAND_STATIC, codes))
    assert sorted(map(tuple, decoded.to_numpy().tolist())) == [(1, "038"), (1, "428"), (2, "428")]


def test_uniform_and_quantile_bins():
    values = np.concatenate([np.arange(100.0), [1e6]])  # one outlier
    uniform = fit_binning(values, 4, "uniform", (0.0, 0.99))
    assert uniform.high == pytest.approx(np.quantile(values, 0.99))
    assert np.diff([uniform.low, *uniform.edges, uniform.high]) == pytest.approx([uniform.high / 4] * 4)
    assert uniform.assign(np.array([1e6]))[0] == 3  # trimmed into the last bin
    quantile = fit_binning(values, 4, "quantile", (0.0, 0.99))
    counts = np.bincount(quantile.assign(values), minlength=4)
    assert counts.max() - counts.min() <= 1  # equal-frequency bins
    # a discrete variable keeps its values exactly: coinciding quantile edges merge
    gcs = fit_binning(np.array([3.0, 15.0, 15.0, 15.0, 15.0, 14.0, 15.0, 3.0]), 10, "quantile", (0.0, 1.0))
    assert sorted(set(np.asarray(gcs.representatives)[gcs.assign(np.array([3.0, 14.0, 15.0]))])) == [3.0, 14.0, 15.0]
    with pytest.raises(ValueError, match="binning is 'log'"):
        fit_binning(values, 4, "log", (0.0, 1.0))


def test_unseen_variable_level_and_code_are_clear_errors():
    tokenizer = _hand_tokenizer()
    new_variable = pd.concat([HAND_TS, _timeseries([(2, 60, "Lactate", 2.0)])])
    with pytest.raises(ValueError, match=r"variable \['Lactate'\] did not occur in the training records"):
        tokenizer.tokenize(new_variable, HAND_STATIC)
    new_level = HAND_STATIC.assign(icu_type=["MICU", "TSICU"])
    with pytest.raises(ValueError, match=r"icu_type level \['TSICU'\]"):
        tokenizer.tokenize(HAND_TS, new_level)
    with pytest.raises(ValueError, match="icu_type is missing in 1 record"):
        tokenizer.tokenize(HAND_TS, HAND_STATIC.assign(icu_type=["MICU", None]))
    with pytest.raises(ValueError, match="non-finite value"):
        tokenizer.tokenize(HAND_TS.assign(value=[80.0, np.nan, 90.0, 100.0, 70.0]), HAND_STATIC)
    with pytest.raises(ValueError, match="outside 0..2880 minutes"):
        tokenizer.tokenize(HAND_TS.assign(minutes=[0, 0, 130, 3000, 30]), HAND_STATIC)


def test_unseen_input_maps_to_unk_when_asked_and_decoding_drops_it():
    tokenizer = _hand_tokenizer(on_unknown="unk")
    new_variable = pd.concat([HAND_TS, _timeseries([(2, 30, "Lactate", 2.0)])])
    corpus = tokenizer.tokenize(new_variable, HAND_STATIC.assign(icu_type=["MICU", "TSICU"]))
    second = corpus_sequences(corpus)[1].tolist()
    assert second.count(UNK) == 2  # the ICU type and the Lactate value
    timeseries, static, _ = tokenizer.detokenize(corpus)
    assert "Lactate" not in set(timeseries["parameter"])
    assert static["icu_type"].isna().tolist() == [False, True]


def test_generated_sequences_decode_leniently():
    tokenizer = _hand_tokenizer()
    tok = {s: i for i, s in enumerate(tokenizer.vocab)}
    sequences = [
        # values before the covariates, a second label (ignored), tokens after </s> (ignored),
        # a value with no closing gap (dropped)
        ["<s>", "HR:90", "gap:60min", "age:70", "label:0", "label:1", "Na:140", "gap:120min", "HR:70", "</s>", "HR:90", "gap:60min"],
        ["<s>", "age:60", "HR:90", "gap:0min", "</s>"],  # no label: dropped
    ]
    corpus = sequences_corpus(np.array([900, 901]), [np.array([tok[s] for s in seq]) for seq in sequences])
    timeseries, static, _ = tokenizer.detokenize(corpus)
    assert timeseries.to_dict("records") == [
        {"record_id": 900, "minutes": 60, "parameter": "HR", "value": 90.0},
        {"record_id": 900, "minutes": 180, "parameter": "Na", "value": 140.0},
    ]
    assert static["record_id"].tolist() == [900] and static["label"].tolist() == [0]
    assert static["age"].tolist() == [70.0] and np.isnan(static["weight"].iloc[0])


def test_decoded_times_never_pass_the_window():
    tokenizer = _hand_tokenizer()
    late = _timeseries([(1, 2870, "HR", 80.0), (2, 1500, "HR", 70.0), (2, 2880, "HR", 70.0)])
    timeseries, _, _ = tokenizer.detokenize(tokenizer.tokenize(late, HAND_STATIC))
    assert timeseries["minutes"].max() <= 2880


def test_grammar_rows_allow_one_covariate_then_the_label_then_the_body():
    tokenizer = _hand_tokenizer()
    grammar = tokenizer.grammar()
    assert grammar.shape == (len(tokenizer.covariates) + 2, tokenizer.vocab_size)
    # age is never missing in training: no age:nan; height is
    assert [tokenizer.vocab[i] for i in np.flatnonzero(grammar[0])] == ["age:60", "age:70"]
    assert [tokenizer.vocab[i] for i in np.flatnonzero(grammar[1])] == ["height:170", "height:nan"]
    assert [tokenizer.vocab[i] for i in np.flatnonzero(grammar[-2])] == ["label:0", "label:1"]
    body = {tokenizer.vocab[i] for i in np.flatnonzero(grammar[-1])}
    assert "</s>" in body and "HR:70" in body and "gap:60min" in body
    assert not body & {"<s>", "<pad>", "<unk>", "label:0", "age:60"}
    assert grammar[-1, EOS]


# ----------------------------------------------------------------------------- real records


@pytest.mark.slow
def test_real_physionet_records_round_trip(physionet2012_features: DataCatalog):
    timeseries = physionet2012_features.load("ingestion.timeseries")
    static = physionet2012_features.load("ingestion.static")
    train_static = static[static["split_group"] == "a"]
    train = timeseries[timeseries["record_id"].isin(train_static["record_id"])]
    tokenizer = RecordTokenizer.fit(train, train_static)  # the project's defaults: 10 quantile bins, hourly grid
    assert tokenizer.variables == sorted(train["parameter"].unique()) and len(tokenizer.variables) == 37
    corpus = tokenizer.tokenize(train, train_static)
    assert len(corpus["record_id"]) == 4000
    decoded, decoded_static, _ = tokenizer.detokenize(corpus)

    # row for row: same records and variables, in (record, hour, variable) order
    original = train.assign(hour=train["minutes"] // 60).sort_values(["record_id", "hour", "parameter"], kind="stable")
    assert len(decoded) == len(original) == len(train)
    np.testing.assert_array_equal(decoded["record_id"], original["record_id"])
    np.testing.assert_array_equal(decoded["parameter"], original["parameter"])
    # values: each one its bin's representative, and the original lies inside that bin (after trimming)
    for name in tokenizer.variables:
        rows = (original["parameter"] == name).to_numpy()
        values = original["value"].to_numpy()[rows]
        np.testing.assert_allclose(decoded["value"].to_numpy()[rows], tokenizer.decoded_value(name, values))
        bins = tokenizer.value_bins[tokenizer.variables.index(name)]
        bounds = np.array([bins.low, *bins.edges, bins.high])
        index = bins.assign(values)
        clipped = np.clip(values, bins.low, bins.high)
        assert ((bounds[index] <= clipped) & (clipped <= bounds[index + 1])).all(), name
    # times: on the hourly grid; almost every row keeps its hour, none moves far
    hours_moved = np.abs(decoded["minutes"].to_numpy() // 60 - original["hour"].to_numpy())
    assert (decoded["minutes"] % 60 == 0).all()
    assert (hours_moved == 0).mean() > 0.995
    assert hours_moved.max() <= 26  # the widest gap bin in use, 16.5-26.5 h, bounds the error
    # covariates and labels
    merged = decoded_static.merge(train_static, on="record_id", suffixes=("", "_real"))
    assert len(merged) == 4000
    np.testing.assert_array_equal(merged["label"], merged["label_real"])
    np.testing.assert_array_equal(merged["icu_type"], merged["icu_type_real"])
    np.testing.assert_array_equal(merged["gender"].isna(), merged["gender_real"].isna())
    for name in ("age", "height", "weight"):
        bins = tokenizer.covariate_bins[tokenizer.continuous_covariates.index(name)]
        known = merged[f"{name}_real"].notna().to_numpy()
        np.testing.assert_array_equal(merged[name].isna().to_numpy(), ~known)
        expected = np.asarray(bins.representatives)[bins.assign(merged[f"{name}_real"].to_numpy()[known])]
        np.testing.assert_allclose(merged[name].to_numpy()[known], expected)
