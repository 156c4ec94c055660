"""The discrete structure of real values, learnt from the train split and imposed on generated values.

Real EHR values sit on lattices and point masses: a Glasgow coma score takes a dozen levels,
MechVent is 1 whenever it is recorded, sodium and potassium come at the analyser's resolution,
winsorising at the 5th/95th training percentiles puts about 5 % of a feature's cells exactly at
0 and at 1 of the [0, 1] scale, and a missing height becomes the training median. A generator's
output is continuous, so a detector tells it from real data by that alone, whatever else it gets
right (docs/synthetic_evaluation.md). This module learns, per column,

- a **lattice**: when at most `max_levels` distinct values cover at least `coverage` of the
  observed training cells (binary columns included), those values; every generated value is
  snapped to the nearest of them;
- otherwise **point masses**: the values that hold at least `point_mass_share` of the observed
  training cells (the winsorising bounds, a gap fill, a modal value); for each, the generated cells
  nearest to it, as many as its training share of the generated cells, are set to it, so the
  share at the point mass is at least the training share (exactly it, unless the generator
  already puts more there). Every other generated value stays as it was.

With `marginals: quantiles` every column of more than two training values (the continuous ones and the
lattices of many levels: GCS, sodium, age) is instead mapped onto the **empirical quantiles** of its training
values: the generated value of rank r among n takes the training quantile at (r + 1/2) / n (a training value,
`inverted_cdf`). The pooled marginal of the generated column then is the training one, lattice levels, point
masses and their shares included, while each record keeps the generator's order of values, which carries its
relations to the other columns and to the label. Binary columns (MechVent, gender, the ICU-type one-hots, whose
sum must stay 1) are snapped as above.

With `observation_counts: training` the mask is calibrated the same way before the values: per time-series
feature, the number of observed hours of the record of rank r among n (by its generated count) becomes the
training records' count at that quantile; observed hours are removed, or unobserved ones added, at random hours of
the record. An added hour takes the value the record already shows there (the last observed one, or the gap
fill), so it changes the mask and `delta`, not the series. How often a variable is measured at all
(respiratory rate: never in 72 % of PhysioNet's training records, in about 2 % of EHRDiff's) is a
record-level pattern that a generator of hourly flags misses while getting each hour's rate right.

With `measurement_groups: training` the variables measured together are measured together in the output
too. A generator of hourly flags gets each variable's rate right but draws the flags of one blood draw
apart: BUN and creatinine come at identical hours in 97 % of PhysioNet's training records and in none of
EHRDiff's. The groups are learnt from the training mask: average-linkage clusters of the variables whose
observed cells overlap (Jaccard index of the pooled hourly flags) at least `group_min_jaccard` (on PhysioNet
2012 at 0.7: the chemistry panel, the blood count, the liver panel, the blood gas, invasive and non-invasive
blood pressure). A group's *events* are the hours at which any member is observed. In the output, a record's
events of a group are its generated ones (with `observation_counts: training`, their number mapped onto the
training records' counts of events, removing the hours the fewest members flag first, adding at random), and
each event takes a pattern of members drawn from the training patterns (the whole panel; BUN and creatinine
alone; potassium alone): a record's first event from the training records' first events, each later one from
the training transitions between consecutive patterns of a record. With `observation_counts: training` every
variable's count is then calibrated as below, a grouped variable gaining hours only at its group's events.

Time series are learnt and snapped on observed cells (`mask`), in the bundle's own [0, 1] units
(the scaler's map from clinical units is affine, so a lattice there is one here); unobserved hours
are then re-imputed from the snapped values, as the features pipeline does. Statics are learnt and
snapped on every record. Labels and codes are left as they are, and so are masks unless
`observation_counts` or `measurement_groups` is `training`. Nothing here knows Kedro.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from .common import impute_like_features

DEFAULTS = {"max_levels": 100, "coverage": 0.99, "point_mass_share": 0.02, "marginals": "point_masses",
            "observation_counts": "generated", "measurement_groups": "generated", "group_min_jaccard": 0.7}
MARGINALS = ("point_masses", "quantiles")
OBSERVATION_COUNTS = ("generated", "training")
MEASUREMENT_GROUPS = ("generated", "training")
TIE_BREAK_SEED = 2012
QUANTILE_GRID = 10_001  # training quantiles kept per column: more than a lattice needs, few enough to store
RECORD_CHUNK = 4096  # records re-imputed at a time (bounded memory for large, file-backed bundles)


def lattice_settings(value: bool | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """`synthesis.<source>.<generator>.lattice`: true (the defaults), false/None (off) or a mapping
    overriding max_levels, coverage, point_mass_share, marginals (point_masses | quantiles),
    observation_counts and measurement_groups (generated | training) and group_min_jaccard (0 < j ≤ 1)."""
    if value is None or value is False:
        return None
    if value is True:
        return dict(DEFAULTS)
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"unknown lattice setting(s) {unknown}; known: {sorted(DEFAULTS)}")
        settings = {**DEFAULTS, **value}
        if settings["marginals"] not in MARGINALS:
            raise ValueError(f"lattice.marginals is {settings['marginals']!r}; use one of {list(MARGINALS)}")
        if settings["observation_counts"] not in OBSERVATION_COUNTS:
            raise ValueError(f"lattice.observation_counts is {settings['observation_counts']!r}; "
                             f"use one of {list(OBSERVATION_COUNTS)}")
        if settings["measurement_groups"] not in MEASUREMENT_GROUPS:
            raise ValueError(f"lattice.measurement_groups is {settings['measurement_groups']!r}; "
                             f"use one of {list(MEASUREMENT_GROUPS)}")
        if not 0.0 < float(settings["group_min_jaccard"]) <= 1.0:
            raise ValueError(f"lattice.group_min_jaccard is {settings['group_min_jaccard']!r}; use a share in (0, 1]")
        return settings
    raise ValueError(f"lattice is {value!r}; use true, false or a mapping of {sorted(DEFAULTS)}")


def fit_column(values: np.ndarray, max_levels: int = 100, coverage: float = 0.99, point_mass_share: float = 0.02,
               marginals: str = "point_masses") -> dict[str, list[float]]:
    """The discrete structure of one column's observed values: {"levels": [...]} (sorted) for a
    lattice, {"point_masses": [...], "shares": [...]} (largest share first), or {} for neither; with
    `marginals="quantiles"`, {"quantiles": [...]} (QUANTILE_GRID training values at evenly spaced
    probabilities) for every column of more than two distinct values."""
    values = np.asarray(values)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {}
    unique, counts = np.unique(values, return_counts=True)
    if marginals == "quantiles" and unique.size > 2:
        grid = np.linspace(0.0, 1.0, min(QUANTILE_GRID, values.size))
        return {"quantiles": [float(v) for v in np.quantile(values, grid, method="inverted_cdf")]}
    order = np.argsort(-counts, kind="stable")
    covered = np.cumsum(counts[order]) / values.size
    needed = int(np.searchsorted(covered, coverage - 1e-12)) + 1
    if needed <= max_levels:
        return {"levels": [float(v) for v in np.sort(unique[order[:needed]])]}
    shares = counts[order] / values.size
    heavy = order[shares >= point_mass_share]
    if heavy.size == 0:
        return {}
    return {"point_masses": [float(v) for v in unique[heavy]], "shares": [float(c / values.size) for c in counts[heavy]]}


def fit_lattice(bundle: Mapping[str, np.ndarray], max_levels: int = 100, coverage: float = 0.99, point_mass_share: float = 0.02,
                marginals: str = "point_masses", observation_counts: str = "generated",
                measurement_groups: str = "generated", group_min_jaccard: float = 0.7) -> dict[str, list]:
    """Per time-series feature (observed cells of X) and per static column: fit_column; with
    `observation_counts="training"` also, per feature, the quantiles of the records' observed-hour counts;
    with `measurement_groups="training"` the groups of variables measured together (fit_measurement_groups)."""
    settings = {"max_levels": max_levels, "coverage": coverage, "point_mass_share": point_mass_share, "marginals": marginals}
    fitted: dict[str, list] = {}
    if "X" in bundle:
        X, mask = np.asarray(bundle["X"]), np.asarray(bundle["mask"], dtype=bool)
        fitted["X"] = [fit_column(X[:, :, j][mask[:, :, j]], **settings) for j in range(X.shape[2])]
        if observation_counts == "training":
            grid = np.linspace(0.0, 1.0, min(QUANTILE_GRID, X.shape[0]))
            fitted["observation_counts"] = [np.quantile(mask[:, :, j].sum(axis=1), grid, method="inverted_cdf").astype(int).tolist()
                                            for j in range(X.shape[2])]
        if measurement_groups == "training":
            fitted["measurement_groups"] = fit_measurement_groups(mask, group_min_jaccard,
                                                                  with_event_counts=observation_counts == "training")
    if "static" in bundle and np.asarray(bundle["static"]).ndim == 2:
        static = np.asarray(bundle["static"])
        fitted["static"] = [fit_column(static[:, j], **settings) for j in range(static.shape[1])]
    return fitted


def hourly_jaccard(mask: np.ndarray) -> np.ndarray:
    """(F, F) Jaccard index of the features' observed cells, pooled over records and hours of an (N, T, F) mask:
    the share of the cells where either is observed in which both are (1 on the diagonal; 0 where neither is).
    Counted RECORD_CHUNK records at a time (bounded memory for large, file-backed masks)."""
    n_features = np.shape(mask)[-1]
    both = np.zeros((n_features, n_features), dtype=np.int64)
    for start in range(0, len(mask), RECORD_CHUNK):
        flat = np.asarray(mask[start:start + RECORD_CHUNK], dtype=bool).reshape(-1, n_features).astype(np.float64)
        both += np.rint(flat.T @ flat).astype(np.int64)  # exact: float64 counts far below 2**53
    observed = np.diag(both)
    either = observed[:, None] + observed[None, :] - both
    jaccard = np.where(either > 0, both / np.maximum(either, 1), 0.0)
    np.fill_diagonal(jaccard, 1.0)
    return jaccard


def fit_measurement_groups(mask: np.ndarray, min_jaccard: float, with_event_counts: bool) -> list[dict[str, list]]:
    """The groups of two or more time-series features whose observed cells overlap: average-linkage clusters
    of the Jaccard index of their pooled hourly flags, cut at `min_jaccard`. Per group: `members` (feature
    indices), the `patterns` of members observed at the group's events (hours with any member observed) with
    their pooled `shares`, the shares of a record's first event (`first_shares`: the admission panel) and the
    `transitions` from one event's pattern to the next event's in the same record (a record that measures
    potassium alone tends to again); `with_event_counts`, the quantiles of the records' event counts."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape[2] < 2:
        return []
    labels = fcluster(linkage(squareform(1.0 - hourly_jaccard(mask), checks=False), "average"), 1.0 - min_jaccard, "distance")
    grid = np.linspace(0.0, 1.0, min(QUANTILE_GRID, mask.shape[0]))
    groups = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if members.size < 2:
            continue
        flags = mask[:, :, members]
        events = flags.any(axis=2)
        patterns, pattern, counts = np.unique(flags[events], axis=0, return_inverse=True, return_counts=True)
        pattern = pattern.reshape(-1)
        record = np.nonzero(events)[0]  # events in record order, then hour order
        first = np.r_[True, record[1:] != record[:-1]]
        follows = np.flatnonzero(~first)
        transitions = np.zeros((len(patterns), len(patterns)))
        np.add.at(transitions, (pattern[follows - 1], pattern[follows]), 1.0)
        shares = counts / counts.sum()
        # a pattern never followed by another event in training goes on with the pooled shares
        totals = transitions.sum(axis=1, keepdims=True)
        transitions = np.where(totals > 0, transitions / np.maximum(totals, 1.0), shares[None, :])
        group = {"members": members.tolist(), "patterns": patterns.astype(int).tolist(), "shares": shares.tolist(),
                 "first_shares": (np.bincount(pattern[first], minlength=len(patterns)) / first.sum()).tolist(),
                 "transitions": transitions.tolist()}
        if with_event_counts:
            group["event_counts"] = np.quantile(events.sum(axis=1), grid, method="inverted_cdf").astype(int).tolist()
        groups.append(group)
    return groups


def snap_to_levels(values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Each value replaced by the nearest of the sorted `levels` (ties go to the lower level)."""
    levels = np.asarray(levels, dtype=values.dtype)
    if len(levels) == 1:
        return np.full_like(values, levels[0])
    upper = np.clip(np.searchsorted(levels, values), 1, len(levels) - 1)
    lower = upper - 1
    take_upper = np.abs(levels[upper] - values) < np.abs(values - levels[lower])
    return np.where(take_upper, levels[upper], levels[lower]).astype(values.dtype)


def impose_point_masses(values: np.ndarray, masses: list[float], shares: list[float]) -> np.ndarray:
    """For each point mass (largest share first), the round(share · n) values nearest to it that no
    earlier point mass took are set to it; the others are returned as they were."""
    out = np.array(values, copy=True)
    free = np.ones(out.shape, dtype=bool)
    for mass, share in zip(masses, shares, strict=True):
        count = min(int(round(share * out.size)), int(free.sum()))
        if count == 0:
            continue
        candidates = np.flatnonzero(free)
        distance = np.abs(out[candidates].astype(np.float64) - mass)
        nearest = candidates[np.argsort(distance, kind="stable")[:count]]
        out[nearest] = mass
        free[nearest] = False
    return out


def map_to_quantiles(values: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """The value of rank r among n replaced by `quantiles` (sorted, evenly spaced probabilities from 0
    to 1) at probability (r + 1/2) / n. Tied values (a generator's bin representatives, its clipping
    bounds) are ranked in a fixed pseudo-random order, so that no record or hour systematically gets
    the low end of a tie's share of the training values."""
    quantiles = np.asarray(quantiles, dtype=values.dtype)
    out = np.empty_like(values)
    if values.size == 0:
        return out
    tie_break = np.random.default_rng(TIE_BREAK_SEED).random(values.size)
    ranks = np.lexsort((tie_break, values))
    # the nearest grid probability, halves rounded up (np.round's halves-to-even would merge neighbours)
    position = np.floor((np.arange(values.size) + 0.5) / values.size * (len(quantiles) - 1) + 0.5).astype(np.int64)
    out[ranks] = quantiles[position]
    return out


def recount_hours(flags: np.ndarray, quantiles: list[int], rng: np.random.Generator,
                  keep_first: np.ndarray | None = None, allowed: np.ndarray | None = None) -> np.ndarray:
    """(N, T) flags whose per-record counts are mapped onto the count `quantiles` (map_to_quantiles of the
    generated counts) by unsetting set hours or setting unset ones: set hours go in the order of `keep_first`
    (lowest first; none: random), unset ones are added at random among the `allowed` hours (default: all; a
    record runs out of them before its count if it must)."""
    generated = flags.sum(axis=1)
    change = map_to_quantiles(generated.astype(np.float64), np.asarray(quantiles, np.float64)).astype(np.int64) - generated
    keys = rng.random(flags.shape)
    if keep_first is not None:  # integer priorities: the random key only breaks ties
        keys = np.where(flags, keep_first + keys, keys) / (np.max(keep_first, initial=0) + 1.0)
    # rank of each hour among the record's set (to remove) or unset (to add) hours, the allowed unset ones first
    unset = 2.0 + keys if allowed is None else np.where(allowed, 2.0, 4.0) + keys
    rank = np.argsort(np.argsort(np.where(flags, keys, unset), axis=1), axis=1)
    remove = flags & (rank < np.maximum(-change, 0)[:, None])
    add = ~flags & (rank - generated[:, None] < np.maximum(change, 0)[:, None])
    if allowed is not None:
        add &= allowed
    return (flags & ~remove) | add


def impose_observation_counts(mask: np.ndarray, count_quantiles: list[list[int]],
                              groups: list[Mapping[str, list]] = ()) -> np.ndarray:
    """Per feature j, the records' observed-hour counts mapped onto `count_quantiles[j]` (recount_hours, hours
    chosen at random in the record); a member of one of the measurement `groups` gains hours only at its group's
    events (the hours another member is observed). Returns the new mask."""
    rng = np.random.default_rng(TIE_BREAK_SEED)
    out = np.array(mask, dtype=bool, copy=True)
    events = {j: out[:, :, group["members"]].any(axis=2) for group in groups for j in group["members"]}
    for j, quantiles in enumerate(count_quantiles):
        out[:, :, j] = recount_hours(out[:, :, j], quantiles, rng, allowed=events.get(j))
    return out


def impose_measurement_groups(mask: np.ndarray, groups: list[Mapping[str, list]]) -> np.ndarray:
    """Per group (fit_measurement_groups), the members' flags rebuilt from the record's generated events: the
    hours any member flags, their number recounted onto `event_counts` when the group has them (the hours the
    fewest members flag are removed first), each event a pattern of members drawn as in training: the first
    from `first_shares`, each later one from the `transitions` of the record's previous pattern."""
    rng = np.random.default_rng(TIE_BREAK_SEED + 1)
    out = np.array(mask, dtype=bool, copy=True)
    for group in groups:
        members = np.asarray(group["members"])
        support = out[:, :, members].sum(axis=2)
        events = support > 0
        if group.get("event_counts"):
            events = recount_hours(events, group["event_counts"], rng, keep_first=support)
        patterns = np.asarray(group["patterns"], dtype=bool)
        cumulative = np.cumsum(np.vstack([group["transitions"], group["first_shares"]]), axis=1)
        previous = np.full(events.shape[0], len(patterns))  # the last row of `cumulative`: no event yet
        flags = np.zeros(events.shape + (members.size,), dtype=bool)
        for hour in range(events.shape[1]):
            rows = np.flatnonzero(events[:, hour])
            drawn = (rng.random(rows.size)[:, None] >= cumulative[previous[rows]]).sum(axis=1)
            drawn = np.minimum(drawn, len(patterns) - 1)  # a cumulative sum a rounding short of 1
            flags[rows, hour] = patterns[drawn]
            previous[rows] = drawn
        out[:, :, members] = flags
    return out


def snap_column(values: np.ndarray, structure: Mapping[str, list[float]]) -> np.ndarray:
    """One column's generated values on its fitted structure (see fit_column)."""
    if "quantiles" in structure:
        return map_to_quantiles(values, np.asarray(structure["quantiles"]))
    if "levels" in structure:
        return snap_to_levels(values, np.asarray(structure["levels"]))
    if "point_masses" in structure:
        return impose_point_masses(values, structure["point_masses"], structure["shares"])
    return values


def apply_lattice(bundle: Mapping[str, np.ndarray], lattice: Mapping[str, list[dict]], fill: np.ndarray, in_place: bool = False) -> dict[str, np.ndarray]:
    """The bundle with X (observed cells, then re-imputed with `fill` before a first observation)
    and static snapped onto `lattice` (fit_lattice of the real train split). `in_place` writes into
    the bundle's own arrays (e.g. a generator's file-backed output) instead of copies."""
    out = dict(bundle)
    if "X" in bundle and lattice.get("X"):
        X = bundle["X"] if in_place else np.array(bundle["X"], copy=True)
        mask = np.asarray(bundle["mask"], dtype=bool)
        if len(lattice["X"]) != X.shape[2]:
            raise ValueError(f"the lattice has {len(lattice['X'])} time-series features but X has {X.shape[2]}; "
                             "it was learnt on another feature set")
        recount = bool(lattice.get("observation_counts") or lattice.get("measurement_groups"))
        if recount:
            # an added hour keeps the value X already shows there (the generator's output is imputed)
            groups = lattice.get("measurement_groups", [])
            mask = impose_observation_counts(impose_measurement_groups(mask, groups),
                                             lattice.get("observation_counts", []), groups)
            if in_place:
                bundle["mask"][...] = mask
                mask = bundle["mask"]
            out["mask"] = mask
        for j, structure in enumerate(lattice["X"]):
            if structure:
                column, observed = X[:, :, j], mask[:, :, j]
                column[observed] = snap_column(column[observed], structure)
        fill = np.asarray(fill, dtype=np.float32)
        delta = None
        if recount:
            delta = bundle["delta"] if in_place else np.array(bundle["delta"], copy=True)
        for start in range(0, X.shape[0], RECORD_CHUNK):
            rows = slice(start, start + RECORD_CHUNK)
            X[rows], recomputed = impute_like_features(X[rows], mask[rows], fill)
            if delta is not None:  # otherwise the mask is unchanged, and so is delta
                delta[rows] = recomputed
        out["X"] = X
        if delta is not None:
            out["delta"] = delta
    if "static" in bundle and lattice.get("static"):
        static = bundle["static"] if in_place else np.array(bundle["static"], copy=True)
        if len(lattice["static"]) != static.shape[1]:
            raise ValueError(f"the lattice has {len(lattice['static'])} static columns but the bundle {static.shape[1]}")
        for j, structure in enumerate(lattice["static"]):
            if structure:
                static[:, j] = snap_column(static[:, j], structure)
        out["static"] = static
    return out


def snap_like_train(synthetic: Mapping[str, np.ndarray], train: Mapping[str, np.ndarray], fill: np.ndarray,
                    settings: Mapping[str, Any], in_place: bool = False) -> dict[str, np.ndarray]:
    """fit_lattice on the real `train` bundle with `settings`, then apply_lattice to `synthetic`."""
    return apply_lattice(synthetic, fit_lattice(train, **settings), fill, in_place)
