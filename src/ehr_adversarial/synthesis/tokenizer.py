"""SynEHRgy-style tokenizer for mixed-type ICU records.

One record becomes one token sequence::

    <s>  cov tokens (one per covariate)  label  code tokens (sorted, where the source has them)
         { (variable, value-bin) tokens of one time step … gap }*  </s>

- Continuous covariates (age, height, weight) and every time-series variable are cut into about
  `n_bins` bins (`uniform` or `quantile` edges) after trimming outliers: values are clipped to the
  [trim_quantiles] range of the training values first. A bin decodes to its representative value,
  the (lower) median of the training values inside it, itself a training value (a bin's midpoint if
  it holds none), so discrete variables such as GCS or MechVent come back exactly. Quantile edges that coincide are merged, so a variable may
  have fewer bins than asked.
- Categorical covariates (gender, ICU type) get one token per level seen in training.
- A covariate that is missing in some training records (e.g. height) also gets a `nan` token; one
  that never is (ICU type) does not, and a missing value of it is unseen input (see below).
- A time step is the set of measurements sharing one timestamp, after timestamps are floored to
  `time_resolution_minutes` (60 by default: the hourly grid of the tensors, so that the common
  1-, 2- and 3-hour gaps come back exactly; 1 keeps the raw irregular minutes as SynEHRgy does).
  Its value tokens (in variable order) are closed by one gap token: the time since the previous step (since admission for the first),
  cut at `gap_edges_hours` (SynEHRgy's 0, .5, 1.5, 2.5, 3.5, 6.5, 10.5, 16.5, 26.5, 48). A gap bin
  decodes to the (lower) median training gap inside it, except the first ([0, 0.5 h)), which decodes to 0.
  Gaps are measured from the *decoded* time of the previous step (error feedback) and the first bin
  adds nothing, so decoding errors cannot accumulate: a decoded time is off from the real one by
  at most about one gap bin's width (0 for the common exact-hour spacing), and never lies past
  the window (a gap that would overshoot it takes the largest bin that fits).

Round trip: detokenize(tokenize(r)) gives r back row for row (same records, variables and order)
with every value replaced by its bin's representative and every time by its decoded time.

Unseen input: a variable, categorical level or code that the training data did not have raises a
`ValueError` naming it (`on_unknown="error"`, the default) or becomes the `<unk>` token
(`on_unknown="unk"`), which detokenize drops. Values outside the training range are not unseen:
they are trimmed into the end bins. Non-finite time-series values are always an error.

Corpora are kept as flat arrays (a "token corpus" dict: record_id (R,), offsets (R + 1,),
tokens (T,) int32), so a whole data set tokenizes and detokenizes with vectorised numpy and saves
as a tensor bundle.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

RESERVED_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")
PAD, BOS, EOS, UNK = range(4)
GAP_EDGES_HOURS = (0.0, 0.5, 1.5, 2.5, 3.5, 6.5, 10.5, 16.5, 26.5, 48.0)

TokenCorpus = dict[str, np.ndarray]


@dataclass
class Binning:
    """Bins of one continuous variable: inner edges (len = n − 1) and a value per bin (len = n)."""

    low: float
    high: float
    edges: list[float]
    representatives: list[float]

    def assign(self, values: np.ndarray) -> np.ndarray:
        """Bin index of each value after clipping to [low, high]."""
        return np.searchsorted(np.asarray(self.edges), np.clip(values, self.low, self.high), side="right")


def fit_binning(values: np.ndarray, n_bins: int, strategy: str, trim_quantiles: Sequence[float]) -> Binning:
    """Bins for `values` (finite training values; at least one)."""
    low, high = (float(q) for q in np.quantile(values, trim_quantiles))
    clipped = np.clip(values, low, high)
    if strategy == "uniform":
        edges = np.linspace(low, high, n_bins + 1)[1:-1] if high > low else np.array([])
    elif strategy == "quantile":
        edges = np.unique(np.quantile(clipped, np.linspace(0, 1, n_bins + 1)[1:-1]))
        edges = edges[(edges > low) & (edges <= high)]
    else:
        raise ValueError(f"synthesis.synehrgy.binning is {strategy!r}; use 'uniform' or 'quantile'")
    bins = np.searchsorted(edges, clipped, side="right")
    bounds = np.concatenate(([low], edges, [high]))
    representatives = []
    for b in range(len(edges) + 1):  # ≤ n_bins iterations
        inside = clipped[bins == b]
        representatives.append(float(np.quantile(inside, 0.5, method="lower")) if inside.size else float((bounds[b] + bounds[b + 1]) / 2))
    return Binning(low, high, [float(e) for e in edges], representatives)


@dataclass
class RecordTokenizer:
    """Vocabulary and bins fitted on training records; JSON round-trips through to_dict/from_dict."""

    variables: list[str]
    value_bins: list[Binning]
    continuous_covariates: list[str]
    covariate_bins: list[Binning]
    categorical_covariates: list[str]
    categorical_levels: list[list[Any]]
    covariate_missing: list[bool]
    codes: list[str]
    gap_edges_minutes: list[float]
    gap_representatives: list[float]
    n_labels: int = 2
    on_unknown: str = "error"
    window_minutes: int = 2880
    time_resolution_minutes: int = 60
    offsets: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    vocab: list[str] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.on_unknown not in ("error", "unk"):
            raise ValueError(f"synthesis.synehrgy.on_unknown is {self.on_unknown!r}; use 'error' or 'unk'")
        vocab = list(RESERVED_TOKENS)

        def block(name: str, labels: Sequence[str]) -> None:
            self.offsets[name] = len(vocab)
            vocab.extend(labels)

        block("label", [f"label:{k}" for k in range(self.n_labels)])
        nan = [[f"{name}:nan"] if missing else [] for name, missing in zip(self.covariates, self.covariate_missing, strict=True)]
        for k, (name, bins) in enumerate(zip(self.continuous_covariates, self.covariate_bins, strict=True)):
            block(f"cov:{name}", [f"{name}:{r:g}" for r in bins.representatives] + nan[k])
        for k, (name, levels) in enumerate(zip(self.categorical_covariates, self.categorical_levels, strict=True)):
            block(f"cov:{name}", [f"{name}:{level}" for level in levels] + nan[len(self.continuous_covariates) + k])
        block("code", [f"code:{c}" for c in self.codes])
        value_offsets = []
        for name, bins in zip(self.variables, self.value_bins, strict=True):
            value_offsets.append(len(vocab))
            block(f"var:{name}", [f"{name}:{r:g}" for r in bins.representatives])
        block("gap", [f"gap:{r:g}min" for r in self.gap_representatives])
        self.offsets["end"] = len(vocab)
        self.vocab = vocab
        self._value_offsets = np.asarray(value_offsets, dtype=np.int64)
        self._build_decoding_tables()

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def covariates(self) -> list[str]:
        return self.continuous_covariates + self.categorical_covariates

    # ---------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("offsets")
        data.pop("vocab")
        data["vocab"] = self.vocab  # for people reading the JSON; ignored by from_dict
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecordTokenizer:
        data = dict(data)
        data.pop("vocab", None)
        data["value_bins"] = [Binning(**b) for b in data["value_bins"]]
        data["covariate_bins"] = [Binning(**b) for b in data["covariate_bins"]]
        return cls(**data)

    def grammar(self) -> np.ndarray:
        """Allowed tokens per position after <s>, (K + 2, V) bool: one row per covariate (its own
        tokens), one for the label, then one for everything after (codes, values, gaps, </s>).

        Sampling with this mask gives every generated record all its covariates and a label.
        """
        rows = []
        for name in self.covariates:
            row = np.zeros(self.vocab_size, dtype=bool)
            row[(self._kind == 2) & (self._owner == self.covariates.index(name))] = True
            rows.append(row)
        rows.append(self._kind == 1)
        body = np.isin(self._kind, (3, 4, 5))
        body[EOS] = True
        rows.append(body)
        return np.stack(rows)

    # ---------------------------------------------------------------- fitting
    @classmethod
    def fit(
        cls,
        timeseries: pd.DataFrame,
        static: pd.DataFrame,
        codes: pd.DataFrame | None = None,
        *,
        n_bins: int = 10,
        binning: str = "quantile",
        trim_quantiles: Sequence[float] = (0.005, 0.995),
        continuous_covariates: Sequence[str] = ("age", "height", "weight"),
        categorical_covariates: Sequence[str] = ("gender", "icu_type"),
        gap_edges_hours: Sequence[float] = GAP_EDGES_HOURS,
        on_unknown: str = "error",
        window_minutes: int = 2880,
        time_resolution_minutes: int = 60,
    ) -> RecordTokenizer:
        """Fit bins and vocabulary on TRAINING records only (the caller selects them).

        timeseries: record_id, minutes, parameter, value; static: record_id, the covariates, label;
        codes (optional): record_id, code.
        """
        _check_columns(timeseries, ("record_id", "minutes", "parameter", "value"), "timeseries")
        _check_columns(static, ("record_id", "label", *continuous_covariates, *categorical_covariates), "static")
        variables = sorted(timeseries["parameter"].astype(str).unique())
        values = timeseries["value"].to_numpy(np.float64)
        _check_finite(values, timeseries, "timeseries")
        parameter = timeseries["parameter"].astype(str).to_numpy()
        order = np.argsort(parameter, kind="stable")
        starts = np.searchsorted(parameter[order], variables)
        ends = np.searchsorted(parameter[order], variables, side="right")
        value_bins = [
            fit_binning(values[order[s:e]], n_bins, binning, trim_quantiles) for s, e in zip(starts, ends, strict=True)
        ]
        covariate_bins = []
        for name in continuous_covariates:
            present = static[name].to_numpy(np.float64)
            present = present[np.isfinite(present)]
            if present.size == 0:
                raise ValueError(f"static column {name!r} has no values in the training records; drop it from the covariates")
            covariate_bins.append(fit_binning(present, n_bins, binning, trim_quantiles))
        levels = [
            sorted(static[name].dropna().unique().tolist(), key=str) for name in categorical_covariates
        ]
        code_list = sorted(codes["code"].astype(str).unique()) if codes is not None and len(codes) else []

        edges_min = np.asarray(gap_edges_hours, dtype=np.float64) * 60.0
        if time_resolution_minutes < 1:
            raise ValueError("synthesis.<source>.synehrgy.time_resolution_minutes must be ≥ 1")
        steps = pd.DataFrame({
            "record_id": timeseries["record_id"].to_numpy(),
            "minutes": timeseries["minutes"].to_numpy(np.int64) // time_resolution_minutes * time_resolution_minutes,
        }).drop_duplicates().sort_values(["record_id", "minutes"])
        first = ~steps["record_id"].duplicated()
        gaps = steps["minutes"].diff().to_numpy(np.float64, copy=True)
        gaps[first.to_numpy()] = steps["minutes"].to_numpy(np.float64)[first.to_numpy()]
        gap_bin = np.searchsorted(edges_min[1:-1], gaps, side="right")
        # the first gap bin decodes to 0 (see the module docstring), the others to their median gap
        gap_reps = [0.0]
        for b in range(1, len(edges_min) - 1):  # ~10 gap bins
            inside = gaps[gap_bin == b]
            # an empty bin decodes to its midpoint, floored onto the time grid
            midpoint = (edges_min[b] + edges_min[b + 1]) / 2 // time_resolution_minutes * time_resolution_minutes
            gap_reps.append(float(np.quantile(inside, 0.5, method="lower")) if inside.size else float(midpoint))
        tokenizer = cls(
            variables=variables,
            value_bins=value_bins,
            continuous_covariates=list(continuous_covariates),
            covariate_bins=covariate_bins,
            categorical_covariates=list(categorical_covariates),
            categorical_levels=levels,
            covariate_missing=[bool(static[name].isna().any()) for name in (*continuous_covariates, *categorical_covariates)],
            codes=code_list,
            gap_edges_minutes=[float(e) for e in edges_min],
            gap_representatives=gap_reps,
            n_labels=int(max(2, static["label"].max() + 1)),
            on_unknown=on_unknown,
            window_minutes=window_minutes,
            time_resolution_minutes=time_resolution_minutes,
        )
        logger.info(
            "tokenizer: %d variables, %d codes, %d gap bins, vocabulary of %d tokens",
            len(variables), len(code_list), len(gap_reps), tokenizer.vocab_size,
        )
        return tokenizer

    # ---------------------------------------------------------------- encoding
    def _lookup(self, kind: str, names: np.ndarray, known: Sequence[Any]) -> np.ndarray:
        """Positions of `names` in `known`; -1 for unseen ones (error unless on_unknown='unk')."""
        index = pd.Index(list(known)).get_indexer(names)
        if (index < 0).any():
            unseen = pd.unique(np.asarray(names)[index < 0])[:10]
            if self.on_unknown == "error":
                raise ValueError(
                    f"tokenizer: {kind} {list(unseen)!r} did not occur in the training records; "
                    "refit the tokenizer on data that has it, or set synthesis.<source>.synehrgy.on_unknown: unk "
                    "to map it to <unk>"
                )
            logger.warning("tokenizer: unseen %s %s mapped to <unk>", kind, list(unseen))
        return index

    def tokenize(
        self, timeseries: pd.DataFrame, static: pd.DataFrame, codes: pd.DataFrame | None = None
    ) -> TokenCorpus:
        """Token corpus of every record in `static` (records without measurements get no steps)."""
        _check_columns(timeseries, ("record_id", "minutes", "parameter", "value"), "timeseries")
        _check_columns(static, ("record_id", "label", *self.covariates), "static")
        record_ids = static["record_id"].to_numpy(np.int64)
        if len(np.unique(record_ids)) != len(record_ids):
            raise ValueError("static has duplicate record_id values; one row per record is expected")
        n = len(record_ids)
        rec_index = pd.Index(record_ids)
        pieces: list[tuple[np.ndarray, ...]] = []  # (record_pos, section, step, sub, token)

        def add(pos, section, step, sub, token) -> None:
            size = len(token)
            pieces.append(tuple(np.broadcast_to(np.asarray(a, dtype=np.int64), (size,)) for a in (pos, section, step, sub, token)))

        all_pos = np.arange(n)
        add(all_pos, 0, 0, 0, np.full(n, BOS))
        for k, (name, bins) in enumerate(zip(self.continuous_covariates, self.covariate_bins, strict=True)):
            raw = static[name].to_numpy(np.float64)
            index = np.where(np.isnan(raw), self._missing_index(k, np.isnan(raw)), bins.assign(np.nan_to_num(raw)))
            add(all_pos, 1, 0, k, np.where(index < 0, UNK, self.offsets[f"cov:{name}"] + index))
        for j, (name, levels) in enumerate(zip(self.categorical_covariates, self.categorical_levels, strict=True)):
            k = len(self.continuous_covariates) + j
            missing = static[name].isna().to_numpy()
            index = np.full(n, self._missing_index(k, missing), dtype=np.int64)
            index[~missing] = self._lookup(f"{name} level", static[name][~missing].to_numpy(object), levels)
            add(all_pos, 1, 0, k, np.where(index < 0, UNK, self.offsets[f"cov:{name}"] + index))
        labels = static["label"].to_numpy(np.int64)
        if ((labels < 0) | (labels >= self.n_labels)).any():
            raise ValueError(f"static.label must lie in 0..{self.n_labels - 1}")
        add(all_pos, 2, 0, 0, self.offsets["label"] + labels)
        if codes is not None and len(codes):
            codes = codes[codes["record_id"].isin(record_ids)].drop_duplicates(["record_id", "code"])
            index = self._lookup("code", codes["code"].astype(str).to_numpy(), self.codes)
            token = np.where(index < 0, UNK, self.offsets["code"] + index)
            add(rec_index.get_indexer(codes["record_id"]), 3, 0, np.maximum(index, 0), token)

        events = timeseries[timeseries["record_id"].isin(record_ids)]
        values = events["value"].to_numpy(np.float64)
        _check_finite(values, events, "timeseries")
        var = self._lookup("variable", events["parameter"].astype(str).to_numpy(), self.variables)
        pos = rec_index.get_indexer(events["record_id"])
        minutes = events["minutes"].to_numpy(np.int64)
        outside = (minutes < 0) | (minutes > self.window_minutes)
        if outside.any():
            row = events.iloc[int(np.flatnonzero(outside)[0])]
            raise ValueError(
                f"tokenizer: {int(outside.sum())} timeseries row(s) lie outside 0..{self.window_minutes} minutes, "
                f"e.g. record {row['record_id']} at minute {row['minutes']}"
            )
        value_token = self._value_tokens(var, values)
        minutes = minutes // self.time_resolution_minutes * self.time_resolution_minutes
        # time steps: distinct (record, minute) pairs, numbered within each record
        step_key = pos * (self.window_minutes + 10**6) + minutes
        uniq_keys, step_of_event = np.unique(step_key, return_inverse=True)
        step_pos = uniq_keys // (self.window_minutes + 10**6)
        step_minutes = (uniq_keys % (self.window_minutes + 10**6)).astype(np.float64)
        step_number = np.arange(len(uniq_keys)) - np.searchsorted(step_pos, step_pos)
        gap_token = self.offsets["gap"] + self._gap_bins(step_pos, step_number, step_minutes)
        add(pos, 4, step_number[step_of_event], np.maximum(var, 0), value_token)
        add(step_pos, 4, step_number, len(self.variables), gap_token)
        add(all_pos, 5, 0, 0, np.full(n, EOS))

        pos, section, step, sub, token = (np.concatenate(col) for col in zip(*pieces, strict=True))
        order = np.lexsort((sub, step, section, pos))
        counts = np.bincount(pos, minlength=n)
        return {
            "record_id": record_ids,
            "offsets": np.concatenate(([0], np.cumsum(counts))).astype(np.int64),
            "tokens": token[order].astype(np.int32),
        }

    def _missing_index(self, k: int, missing: np.ndarray) -> int:
        """Index of covariate k's `nan` token within its block; −1 (<unk>) or an error if it has none."""
        name = self.covariates[k]
        size = len(self.covariate_bins[k].representatives) if k < len(self.continuous_covariates) else len(self.categorical_levels[k - len(self.continuous_covariates)])
        if self.covariate_missing[k]:
            return size
        if missing.any():
            if self.on_unknown == "error":
                raise ValueError(
                    f"tokenizer: {name} is missing in {int(missing.sum())} record(s) but in none of the training records; "
                    "refit the tokenizer or set synthesis.<source>.synehrgy.on_unknown: unk"
                )
            logger.warning("tokenizer: missing %s (never missing in training) mapped to <unk>", name)
        return -1

    def _value_tokens(self, var: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Token of each (variable, value); <unk> where the variable is unseen (var = −1)."""
        token = np.full(len(values), UNK, dtype=np.int64)
        if not len(values):
            return token
        width = max(len(b.edges) for b in self.value_bins)
        edges = np.full((len(self.variables), max(width, 1)), np.inf)
        for v, bins in enumerate(self.value_bins):  # one row per variable (~40)
            edges[v, : len(bins.edges)] = bins.edges
        low = np.array([b.low for b in self.value_bins])
        high = np.array([b.high for b in self.value_bins])
        known = var >= 0
        v = var[known]
        clipped = np.clip(values[known], low[v], high[v])
        # bin = number of inner edges ≤ value (searchsorted 'right', row-wise)
        bins = (clipped[:, None] >= edges[v]).sum(axis=1)
        token[known] = self._value_offsets[v] + bins
        return token

    def _gap_bins(self, step_pos: np.ndarray, step_number: np.ndarray, minutes: np.ndarray) -> np.ndarray:
        """Gap bin of every step, gaps taken from the previous step's decoded time."""
        inner = np.asarray(self.gap_edges_minutes[1:-1])
        reps = np.asarray(self.gap_representatives)
        bins = np.zeros(len(minutes), dtype=np.int64)
        decoded = np.zeros(int(step_pos.max()) + 1 if len(step_pos) else 0)
        # sequential in the step number only (≤ a few hundred passes), vectorised over records
        for k in range(int(step_number.max()) + 1 if len(step_number) else 0):
            at = np.flatnonzero(step_number == k)
            previous = decoded[step_pos[at]]
            wanted = np.searchsorted(inner, np.maximum(minutes[at] - previous, 0.0), side="right")
            # never decode past the window: fall back to the largest gap that still fits
            fits = np.searchsorted(reps, self.window_minutes - previous, side="right") - 1
            bins[at] = np.minimum(wanted, fits)
            decoded[step_pos[at]] = previous + reps[bins[at]]
        return bins

    # ---------------------------------------------------------------- decoding
    def _build_decoding_tables(self) -> None:
        """Per token id: its kind, which covariate/variable it belongs to, and its decoded value."""
        size = self.vocab_size
        self._kind = np.zeros(size, dtype=np.int8)  # 0 special, 1 label, 2 covariate, 3 code, 4 value, 5 gap
        self._owner = np.full(size, -1, dtype=np.int64)
        self._decoded = np.full(size, np.nan)
        start = self.offsets["label"]
        self._kind[start : start + self.n_labels] = 1
        self._decoded[start : start + self.n_labels] = np.arange(self.n_labels)
        for k, (name, bins) in enumerate(zip(self.continuous_covariates, self.covariate_bins, strict=True)):
            start = self.offsets[f"cov:{name}"]
            reps = bins.representatives + ([np.nan] if self.covariate_missing[k] else [])
            self._kind[start : start + len(reps)] = 2
            self._owner[start : start + len(reps)] = k
            self._decoded[start : start + len(reps)] = reps
        for j, (name, levels) in enumerate(zip(self.categorical_covariates, self.categorical_levels, strict=True)):
            k = len(self.continuous_covariates) + j
            start = self.offsets[f"cov:{name}"]
            index = list(range(len(levels))) + ([np.nan] if self.covariate_missing[k] else [])  # level index
            self._kind[start : start + len(index)] = 2
            self._owner[start : start + len(index)] = k
            self._decoded[start : start + len(index)] = index
        start = self.offsets["code"]
        self._kind[start : start + len(self.codes)] = 3
        self._owner[start : start + len(self.codes)] = np.arange(len(self.codes))
        for v, bins in enumerate(self.value_bins):
            start = int(self._value_offsets[v])
            self._kind[start : start + len(bins.representatives)] = 4
            self._owner[start : start + len(bins.representatives)] = v
            self._decoded[start : start + len(bins.representatives)] = bins.representatives
        start = self.offsets["gap"]
        self._kind[start : start + len(self.gap_representatives)] = 5
        self._decoded[start : start + len(self.gap_representatives)] = self.gap_representatives

    def detokenize(self, corpus: Mapping[str, np.ndarray]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """(timeseries, static, codes) tables of a token corpus; lenient with generated sequences.

        Tokens are read by kind wherever they stand: the first token of each covariate and the first
        label token count; value tokens take the time of the gap token that closes their step and are
        dropped when no gap follows them; <unk>/<pad>/<s> are skipped and reading stops at </s>.
        A record without a label token is dropped (and counted in the log). Rows whose decoded time is
        beyond the window are dropped.
        """
        record_ids = np.asarray(corpus["record_id"], dtype=np.int64)
        offsets = np.asarray(corpus["offsets"], dtype=np.int64)
        tokens = np.asarray(corpus["tokens"], dtype=np.int64)
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise ValueError(f"token ids must lie in 0..{self.vocab_size - 1} for this tokenizer")
        n = len(record_ids)
        pos = np.repeat(np.arange(n), np.diff(offsets))
        # everything after a record's first </s> is ignored
        is_eos = (tokens == EOS).astype(np.int64)
        eos_count = np.concatenate(([0], np.cumsum(is_eos)))  # </s> tokens before position i
        live = eos_count[:-1] - eos_count[offsets[:-1]][pos] == 0
        kind = np.where(live, self._kind[tokens], 0)

        # covariates and label: first occurrence per record
        static = pd.DataFrame({"record_id": record_ids})
        for k, name in enumerate(self.covariates):
            at = np.flatnonzero((kind == 2) & (self._owner[tokens] == k))
            chosen = _first_per_group(pos[at], at)
            decoded = np.full(n, np.nan)
            decoded[pos[chosen]] = self._decoded[tokens[chosen]]
            if k < len(self.continuous_covariates):
                static[name] = decoded
            else:
                levels = self.categorical_levels[k - len(self.continuous_covariates)]
                level_values = pd.Series(levels + [None], dtype=object)
                index = np.where(np.isnan(decoded), len(levels), np.nan_to_num(decoded).astype(np.int64))
                column = level_values.iloc[index].to_numpy()
                static[name] = pd.Series(column).astype(float) if all(isinstance(x, (int, float)) for x in levels) else column
        label_at = _first_per_group(pos[np.flatnonzero(kind == 1)], np.flatnonzero(kind == 1))
        label = np.full(n, -1, dtype=np.int64)
        label[pos[label_at]] = self._decoded[tokens[label_at]].astype(np.int64)
        static["label"] = label
        keep = label >= 0
        if not keep.all():
            logger.warning("detokenize: %d of %d records had no label token and were dropped", int((~keep).sum()), n)

        code_at = np.flatnonzero(kind == 3)
        codes = pd.DataFrame(
            {"record_id": record_ids[pos[code_at]], "code": np.asarray(self.codes, dtype=object)[self._owner[tokens[code_at]]]}
        ).drop_duplicates()

        # time steps: value tokens belong to the step the next gap token closes
        event = (kind == 4) | (kind == 5)
        at = np.flatnonzero(event)
        is_gap = kind[at] == 5
        gap_minutes = np.where(is_gap, self._decoded[tokens[at]], 0.0)
        # per record: cumulative decoded time through each token
        event_pos = pos[at]
        group_start = np.searchsorted(event_pos, event_pos)
        csum = np.cumsum(gap_minutes)
        time_through = csum - (csum[group_start] - gap_minutes[group_start])
        # a value token takes the time of the first gap token after it in the same record
        gap_rows = np.flatnonzero(is_gap)
        values_rows = np.flatnonzero(~is_gap)
        next_gap = np.searchsorted(gap_rows, values_rows)
        has_next = next_gap < len(gap_rows)
        closing = gap_rows[np.minimum(next_gap, max(len(gap_rows) - 1, 0))] if len(gap_rows) else values_rows
        has_next &= event_pos[closing] == event_pos[values_rows]
        minutes = np.where(has_next, time_through[closing] if len(gap_rows) else np.nan, np.nan)
        closed = ~np.isnan(minutes)
        in_window = closed & (np.nan_to_num(minutes) <= self.window_minutes)
        if (closed & ~in_window).any() or (~closed).any():
            logger.info(
                "detokenize: dropped %d value tokens with no closing gap token and %d beyond the %d-minute window",
                int((~closed).sum()), int((closed & ~in_window).sum()), self.window_minutes,
            )
        rows = at[values_rows][in_window]
        timeseries = pd.DataFrame(
            {
                "record_id": record_ids[pos[rows]],
                "minutes": np.rint(minutes[in_window]).astype(np.int32),
                "parameter": np.asarray(self.variables, dtype=object)[self._owner[tokens[rows]]],
                "value": self._decoded[tokens[rows]].astype(np.float64),
            }
        )
        kept_ids = record_ids[keep]
        timeseries = timeseries[timeseries["record_id"].isin(kept_ids)].reset_index(drop=True)
        codes = codes[codes["record_id"].isin(kept_ids)].reset_index(drop=True)
        return timeseries, static[keep].reset_index(drop=True), codes

    def decoded_value(self, parameter: str, values: np.ndarray) -> np.ndarray:
        """What detokenize returns for `values` of `parameter` (its bins' representatives)."""
        v = self.variables.index(parameter)
        bins = self.value_bins[v]
        return np.asarray(bins.representatives)[bins.assign(np.asarray(values, dtype=np.float64))]


def _first_per_group(group: np.ndarray, index: np.ndarray) -> np.ndarray:
    """The first entry of `index` for each distinct value of `group` (both in corpus order)."""
    if not len(group):
        return index
    first = np.concatenate(([True], group[1:] != group[:-1]))
    return index[first]


def _check_columns(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"tokenizer: table {name} lacks column(s) {missing}; it has {list(frame.columns)}")


def _check_finite(values: np.ndarray, frame: pd.DataFrame, name: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        row = frame.iloc[int(np.flatnonzero(bad)[0])]
        raise ValueError(
            f"tokenizer: {int(bad.sum())} non-finite value(s) in {name}, e.g. record {row['record_id']} "
            f"parameter {row['parameter']!r} at minute {row['minutes']}; ingestion should have dropped them"
        )


def corpus_sequences(corpus: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The token sequence of each record of a corpus."""
    return np.split(np.asarray(corpus["tokens"]), np.asarray(corpus["offsets"])[1:-1])


def sequences_corpus(record_ids: np.ndarray, sequences: Sequence[np.ndarray]) -> TokenCorpus:
    """A token corpus from one sequence per record."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    return {
        "record_id": np.asarray(record_ids, dtype=np.int64),
        "offsets": np.concatenate(([0], np.cumsum(lengths))).astype(np.int64),
        "tokens": np.concatenate(sequences).astype(np.int32) if len(sequences) else np.zeros(0, np.int32),
    }
