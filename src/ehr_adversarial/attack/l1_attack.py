"""Batched L1 adversarial attack on the logits of a time-series classifier (Sun et al. 2018).

For a record X (T × F, every cell in [0, 1]) with true label y, find δ that flips the label while
keeping ‖δ‖₁ small:

    minimise over δ:  max(Z_y(X + δ) − max_{c≠y} Z_c(X + δ), −κ) + λ ‖δ‖₁,   X + δ ∈ [0, 1]

by proximal gradient (ISTA): a gradient step on the margin term only, then soft-thresholding by
lr·λ (the proximal operator of the L1 term), then projection onto the box X + δ ∈ [0, 1].

Everything runs on a batch of records at once, each with its own λ. A record leaves the active
batch as soon as its run is decided (success and no better δ for `patience` iterations, or a
fixed point without success). The λ search is either one warm-started run per record whose λ
walks the list (`continuation`, the default) or rounds of such batched runs, each record at its
own place in the list (`bisect`, `descending`, `full`). See docs/attack.md.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields

import torch
from torch import Tensor, nn

from ehr_adversarial.torch_utils import input_gradient_mode
from ehr_adversarial.training.adversarial import project_l1_box, sparse_descent_direction

log = logging.getLogger(__name__)

SEARCHES = ("continuation", "bisect", "descending", "full")


@dataclass(frozen=True)
class AttackConfig:
    """Settings of the attack; checked on construction.

    lambdas: the λ values to search (any order; searched from largest to smallest).
    lr: step size of the gradient step; the soft threshold is lr·λ.
    kappa: confidence κ ≥ 0; the margin term is flat below −κ.
    max_iterations: gradient steps per (record, λ) run.
    patience: after a success, keep iterating while the smallest successful L1 improved within
        this many iterations (0 = stop at the first label flip, as the paper's code).
    search: `continuation` (one warm-started run per record whose λ walks down the list every
        `steps_per_lambda` iterations until the label flips; `max_iterations` is then the budget of
        the whole run), `bisect` (binary search for the largest λ that succeeds), `descending` (λ
        from large to small, a fresh run each, stop at the first success), `full` (every λ, as the paper).
    steps_per_lambda: iterations at each λ of a continuation run before moving to the next smaller.
    observed_only: perturb only cells that were observed (needs a mask).
    forward_fill: with observed_only, a change to a measured cell also moves the hours the features stage
        fills from it (forward fill up to the next measurement), as if the measurement itself had been
        different; δ then reports the change of every cell the model sees, while the L1 the search
        minimises is that of the measured cells.
    stall_tol: a run without success stops when no cell of δ moved more than this (fixed point).
    refine: after the search, shrink each record's best δ with forward passes only: keep the fewest
        largest cells that still flip, then scale it towards the decision boundary (regula falsi, each
        step verified, so the result still flips and its L1 never grows).
    refine_steps: bisection steps of the pruning search, and the precision 2^-refine_steps (in α and in the
        margin) at which the scaling search stops.
    polish_steps: after the refinement, gradient steps of a sparse L1 descent inside an L1 ball around the
        record that shrinks whenever the iterate flips (`polish_perturbation`); 0 = none.
    polish_shrink: the ball's radius as a share of the smallest flipping L1 found so far (< 1).
    polish_top_k: cells each polish step moves (those with the steepest margin gradient).
    polish_step_size: L1 length of a polish step, as a share of the ball's radius.
    chunk_size: records per batch; bounds memory.
    """

    lambdas: tuple[float, ...]
    lr: float = 0.02
    kappa: float = 0.0
    max_iterations: int = 100
    patience: int = 10
    search: str = "continuation"
    steps_per_lambda: int = 4
    observed_only: bool = False
    forward_fill: bool = False
    stall_tol: float = 1e-7
    refine: bool = False
    refine_steps: int = 10
    polish_steps: int = 0
    polish_shrink: float = 0.9
    polish_top_k: int = 10
    polish_step_size: float = 0.5
    chunk_size: int = 512

    def __post_init__(self) -> None:
        lambdas = tuple(float(v) for v in self.lambdas)
        if not lambdas:
            raise ValueError("attack lambdas is empty; give at least one λ ≥ 0 (e.g. a log-spaced list).")
        bad = [v for v in lambdas if not math.isfinite(v) or v < 0]
        if bad:
            raise ValueError(f"attack lambdas must be finite and ≥ 0; got {bad}.")
        if not math.isfinite(self.kappa) or self.kappa < 0:
            raise ValueError(f"attack kappa must be ≥ 0 (it is a confidence margin); got {self.kappa}.")
        if not self.lr > 0:
            raise ValueError(f"attack lr must be > 0; got {self.lr}.")
        if self.max_iterations < 1:
            raise ValueError(f"attack max_iterations must be ≥ 1; got {self.max_iterations}.")
        if self.patience < 0:
            raise ValueError(f"attack patience must be ≥ 0; got {self.patience}.")
        if self.search not in SEARCHES:
            raise ValueError(f"attack search is {self.search!r}; it must be one of {', '.join(SEARCHES)}.")
        if self.steps_per_lambda < 1:
            raise ValueError(f"attack steps_per_lambda must be ≥ 1; got {self.steps_per_lambda}.")
        if self.stall_tol < 0:
            raise ValueError(f"attack stall_tol must be ≥ 0; got {self.stall_tol}.")
        if self.refine_steps < 1:
            raise ValueError(f"attack refine_steps must be ≥ 1; got {self.refine_steps}.")
        if self.polish_steps < 0:
            raise ValueError(f"attack polish_steps must be ≥ 0; got {self.polish_steps}.")
        if not 0 < self.polish_shrink < 1:
            raise ValueError(f"attack polish_shrink must lie in (0, 1); got {self.polish_shrink}.")
        if self.polish_top_k < 1:
            raise ValueError(f"attack polish_top_k must be ≥ 1; got {self.polish_top_k}.")
        if not self.polish_step_size > 0:
            raise ValueError(f"attack polish_step_size must be > 0; got {self.polish_step_size}.")
        if self.chunk_size < 1:
            raise ValueError(f"attack chunk_size must be ≥ 1; got {self.chunk_size}.")
        if self.forward_fill and not self.observed_only:
            raise ValueError("attack forward_fill needs observed_only: true (it moves measured cells and the hours "
                             "filled from them).")
        # Largest first: index 0 is the hardest λ to succeed with, and the sparsest δ when it does.
        object.__setattr__(self, "lambdas", tuple(sorted(set(lambdas), reverse=True)))

    @classmethod
    def from_params(cls, attack: Mapping[str, object]) -> AttackConfig:
        """The config of an `attack.<source>` parameter block; `lambdas` is a list or {low, high, count}
        (log-spaced). Keys that are not attack settings (which records to attack) are left out."""
        lambdas = attack.get("lambdas")
        if isinstance(lambdas, Mapping):
            missing = {"low", "high", "count"} - set(lambdas)
            if missing:
                raise ValueError(f"attack.lambdas needs low, high and count; {sorted(missing)} missing.")
            lambdas = log_spaced_lambdas(float(lambdas["low"]), float(lambdas["high"]), int(lambdas["count"]))
        elif lambdas is None:
            raise ValueError("attack.lambdas is not set; give a list or {low, high, count}.")
        settings = {f.name for f in fields(cls)} - {"lambdas"}
        return cls(lambdas=tuple(lambdas), **{key: attack[key] for key in settings if key in attack})

    def as_params(self) -> dict[str, object]:
        """The settings as plain values (for a JSON summary)."""
        return {**asdict(self), "lambdas": list(self.lambdas)}


def log_spaced_lambdas(low: float, high: float, count: int) -> tuple[float, ...]:
    """`count` λ values evenly spaced in log between `low` and `high` (the paper: 5e-4, 1.5e-2, 25)."""
    if not 0 < low <= high or count < 1:
        raise ValueError(f"λ range must satisfy 0 < low ≤ high and count ≥ 1; got {low}, {high}, {count}.")
    return tuple(torch.logspace(math.log10(low), math.log10(high), count, dtype=torch.float64).tolist())


@dataclass
class AttackResult:
    """Per-record outcome of an attack; every tensor has the records on its first axis (CPU).

    The chosen run of a record is the (record, λ) run that gave its smallest successful L1;
    `delta_first` and `first_iteration` come from that run, `delta_best` is its best δ.
    """

    success: Tensor  # bool (N,)
    label: Tensor  # int64 (N,) the true label y
    lambda_best: Tensor  # float64 (N,), NaN without success
    first_iteration: Tensor  # int64 (N,), gradient steps until the first flip in the chosen run; -1 if none
    best_iteration: Tensor  # int64 (N,), gradient steps until the best δ in the chosen run; -1 if none
    delta_first: Tensor  # (N, T, F), zeros without success
    delta_best: Tensor  # (N, T, F), zeros without success
    runs: Tensor  # int64 (N,) how many λ values were tried
    forward_passes: Tensor  # int64 (N,) how many times the record went through the model (cost)
    config: AttackConfig = field(repr=False)

    def norms(self, which: str = "best") -> dict[str, Tensor]:
        """L0, L1 and max|δ| of the first or best δ."""
        return perturbation_norms(self.delta_best if which == "best" else self.delta_first)


def perturbation_norms(delta: Tensor) -> dict[str, Tensor]:
    """Per record: L0 (cells changed), L1 and L∞ (max |δ|) of a (N, T, F) perturbation."""
    flat = delta.detach().abs().flatten(1)
    return {
        "l0": (flat != 0).sum(1),
        "l1": flat.sum(1),
        "linf": flat.amax(1) if flat.shape[1] else flat.sum(1),
    }


def logit_margin(logits: Tensor, label: Tensor) -> Tensor:
    """Z_y − max_{c≠y} Z_c per record: positive while the record is classified as y."""
    true = logits.gather(1, label[:, None]).squeeze(1)
    others = logits.scatter(1, label[:, None], float("-inf"))
    return true - others.amax(1)


@dataclass
class _RunOutcome:
    """Outcome of one ISTA run per record of a batch (see `_ista_run`)."""

    success: Tensor
    first_iteration: Tensor
    best_iteration: Tensor
    best_l1: Tensor
    delta_first: Tensor
    delta_best: Tensor
    forward_passes: Tensor
    lambda_best: Tensor
    clean_margin: Tensor  # the margin at δ = 0 (every run starts there)
    best_margin: Tensor  # the margin at delta_best (NaN without success)


Forward = Callable[[Tensor, Tensor], Tensor]
"""forward(x_adv, rows) → logits, where `rows` index the batch's records (for their other inputs)."""


def _no_progress(n: int) -> None:
    pass


def last_observed_hour(observed: Tensor) -> Tensor:
    """Per cell of (N, T, F) observation flags, the latest observed hour at or before it (-1 when none):
    the hour the features stage's forward fill copies the cell's value from."""
    hours = torch.arange(observed.shape[1], device=observed.device).view(1, -1, 1).expand_as(observed)
    return torch.where(observed.bool(), hours, -1).cummax(dim=1).values


def propagate_forward_fill(delta: Tensor, source: Tensor) -> Tensor:
    """The change of every cell when the measured cells change by `delta`: a filled cell moves with the
    measurement it was filled from (`source`, from `last_observed_hour`); cells before any measurement
    (filled with a constant) do not move."""
    return delta.gather(1, source.clamp(min=0)) * (source >= 0).to(delta.dtype)


def _ista_run(forward: Forward, x: Tensor, label: Tensor, lambdas: Tensor, lam_index: Tensor | None,
              cell_mask: Tensor | None, config: AttackConfig, continuation: bool = False,
              finished: Callable[[int], None] = _no_progress) -> _RunOutcome:
    """One proximal-gradient run per record of the batch, record b with threshold lr·lambdas[lam_index[b]].

    Iteration k evaluates δ_k (δ_0 = 0), then steps to δ_{k+1}. A record leaves the active set
    when its best successful δ has not improved for `patience` iterations, or, without success,
    when δ stopped moving (a fixed point: the model is deterministic, so it would never move).

    With `continuation`, λ is a schedule instead: each record starts at the largest λ below its
    largest gradient component at δ = 0 (a larger λ would keep δ at exactly 0) and moves to the
    next smaller λ every `steps_per_lambda` iterations, or at once when δ stalls, until it flips;
    δ carries over (warm start). After the first flip it moves back up the list every
    `steps_per_lambda` iterations while its iterate still flips. `lam_index` is ignored.

    `finished(n)` is called as n records leave the run.
    """
    n = x.shape[0]
    device = x.device
    delta = torch.zeros_like(x)
    lower, upper = -x, 1.0 - x  # X + δ ∈ [0, 1]
    delta_first = torch.zeros_like(x)
    delta_best = torch.zeros_like(x)
    first_iteration = torch.full((n,), -1, dtype=torch.long, device=device)
    best_iteration = torch.full((n,), -1, dtype=torch.long, device=device)
    best_l1 = torch.full((n,), math.inf, dtype=torch.float64, device=device)
    lambda_best = torch.full((n,), math.nan, dtype=torch.float64, device=device)
    clean_margin = torch.full((n,), math.nan, dtype=torch.float64, device=device)
    best_margin = torch.full((n,), math.nan, dtype=torch.float64, device=device)
    forward_passes = torch.zeros(n, dtype=torch.long, device=device)
    index = torch.zeros(n, dtype=torch.long, device=device) if lam_index is None else lam_index.clone()
    since_change = torch.zeros(n, dtype=torch.long, device=device)  # iterations at the current λ
    shape = (-1, *([1] * (x.dim() - 1)))
    active = torch.arange(n, device=device)

    for k in range(config.max_iterations + 1):
        rows = active
        current = delta[rows].requires_grad_(True)
        margin = logit_margin(forward(x[rows] + current, rows), label[rows])
        forward_passes[rows] += 1
        with torch.no_grad():
            success = margin < 0
            if k == 0:
                clean_margin[rows] = margin.detach().to(torch.float64)
            l1 = current.detach().abs().flatten(1).sum(1, dtype=torch.float64)
            new_first = success & (first_iteration[rows] < 0)
            first_rows = rows[new_first]
            first_iteration[first_rows] = k
            delta_first[first_rows] = current.detach()[new_first]
            improved = success & (l1 < best_l1[rows])
            best_rows = rows[improved]
            best_l1[best_rows] = l1[improved]
            best_iteration[best_rows] = k
            lambda_best[best_rows] = lambdas[index[best_rows]]
            best_margin[best_rows] = margin.detach()[improved].to(torch.float64)
            delta_best[best_rows] = current.detach()[improved]
            # δ = 0 already flips the label (a misclassified record): nothing smaller exists.
            settled = (best_iteration[rows] >= 0) & (
                (k - best_iteration[rows] >= config.patience) | (best_l1[rows] == 0)
            )
        if k == config.max_iterations or bool(settled.all()):
            finished(rows.numel())
            break
        (grad,) = torch.autograd.grad(margin.clamp(min=-config.kappa).sum(), current)
        with torch.no_grad():
            if continuation and k == 0:
                # The largest λ that lets some cell move: λ ≥ max|∇| keeps δ at exactly 0.
                movable = grad.abs() if cell_mask is None else grad.abs() * cell_mask[rows]
                steepest = movable.flatten(1).amax(1).to(lambdas.dtype)
                index[rows] = (lambdas[None, :] >= steepest[:, None]).sum(1).clamp(max=len(lambdas) - 1)
            threshold = (config.lr * lambdas[index[rows]]).to(x.dtype).view(shape)
            before = current.detach()
            stepped = before - config.lr * grad
            stepped = stepped.sign() * (stepped.abs() - threshold).clamp(min=0)
            stepped = torch.maximum(torch.minimum(stepped, upper[rows]), lower[rows])
            if cell_mask is not None:
                stepped = stepped * cell_mask[rows]
            stalled = ~success & ((stepped - before).abs().flatten(1).amax(1) <= config.stall_tol)
            delta[rows] = stepped
            keep = ~(settled | stalled)
            if continuation:
                # Not flipped yet: after steps_per_lambda iterations, or a stall, the next smaller λ.
                # Flipped: while the iterate still flips, the next larger λ every steps_per_lambda
                # iterations, so shrinkage prunes the cells the smaller λ let move (sparser δ).
                since_change[rows] += 1
                searching = first_iteration[rows] < 0
                due = since_change[rows] >= config.steps_per_lambda
                down = searching & (due | stalled) & (index[rows] < len(lambdas) - 1)
                up = ~searching & success & due & (index[rows] > 0)
                index[rows[down]] += 1
                index[rows[up]] -= 1
                since_change[rows[down | up]] = 0
                keep = ~settled & (~stalled | down)
            active = rows[keep]
        finished(rows.numel() - active.numel())
        if active.numel() == 0:
            break
    return _RunOutcome(
        success=first_iteration >= 0,
        first_iteration=first_iteration,
        best_iteration=best_iteration,
        best_l1=best_l1,
        delta_first=delta_first,
        delta_best=delta_best,
        forward_passes=forward_passes,
        lambda_best=lambda_best,
        clean_margin=clean_margin,
        best_margin=best_margin,
    )


class _LambdaSearch:
    """Which λ (index into the descending list) each record tries next, per search strategy.

    λ large → only cells with a steep margin gradient move, so a success is sparse and small;
    too large → no success. Assuming success is monotone in λ, the smallest perturbation is near
    the largest λ that succeeds; `bisect` finds that λ in ⌈log2(L+1)⌉ runs, `descending` walks
    down to it, `full` tries every λ (the paper's sweep); `continuation` makes one warm-started
    run that walks down the list itself (see `_ista_run`). Every strategy keeps the smallest L1
    over all runs it made.
    """

    def __init__(self, strategy: str, n_lambdas: int, n_records: int, device: torch.device):
        self.strategy = strategy
        self.n_lambdas = n_lambdas
        self.low = torch.zeros(n_records, dtype=torch.long, device=device)
        self.high = torch.full((n_records,), n_lambdas - 1, dtype=torch.long, device=device)
        self.next_index = torch.zeros(n_records, dtype=torch.long, device=device)
        if strategy == "bisect":
            self.next_index = (self.low + self.high) // 2
        self.done = torch.zeros(n_records, dtype=torch.bool, device=device)

    def pending(self) -> Tensor:
        """Records that still have a λ to try."""
        return torch.nonzero(~self.done).squeeze(1)

    def update(self, rows: Tensor, success: Tensor) -> None:
        """Advance the records `rows` after their run at `next_index[rows]` (success or not)."""
        tried = self.next_index[rows]
        if self.strategy == "bisect":
            high = torch.where(success, tried - 1, self.high[rows])
            low = torch.where(success, self.low[rows], tried + 1)
            self.low[rows], self.high[rows] = low, high
            self.done[rows] = low > high
            self.next_index[rows] = (low + high) // 2
        else:
            self.next_index[rows] = tried + 1
            finished = (tried + 1 >= self.n_lambdas) | (self.strategy == "continuation")
            if self.strategy == "descending":
                finished = finished | success
            self.done[rows] = finished


def l1_attack(model: nn.Module, x: Tensor, label: Tensor, config: AttackConfig,
              inputs: Mapping[str, Tensor] | None = None, observed: Tensor | None = None,
              progress: Callable[[int], None] | None = None) -> AttackResult:
    """Attack every record of `x` (N, T, F) with true labels `label` (N,), in chunks, on the model's device.

    `model(x_adv, **inputs_of_the_batch)` must return logits (B, C); `inputs` are other per-record
    tensors the model takes (static features, masks), never perturbed. `observed` (N, T, F) bool is
    required when `config.observed_only`. `progress(n)` is called whenever n more records have finished
    their λ search (records of a chunk run side by side and finish at different iterations).
    """
    x = torch.as_tensor(x)
    label = torch.as_tensor(label, dtype=torch.long)
    inputs = {name: torch.as_tensor(value) for name, value in (inputs or {}).items()}
    n = x.shape[0]
    if n == 0:
        raise ValueError("no records to attack (the selection is empty).")
    if label.shape != (n,):
        raise ValueError(f"labels have shape {tuple(label.shape)}; expected ({n},) for {n} records.")
    for name, value in inputs.items():
        if value.shape[0] != n:
            raise ValueError(f"model input {name!r} has {value.shape[0]} rows; expected {n}.")
    if not torch.is_floating_point(x):
        raise ValueError(f"x must be a floating-point tensor; got {x.dtype}.")
    if bool(torch.isnan(x).any()) or float(x.min()) < 0 or float(x.max()) > 1:
        raise ValueError(
            f"x must lie in [0, 1] without NaN (the attack keeps X + δ in [0, 1]); got range "
            f"[{float(x.nan_to_num(0).min()):.4g}, {float(x.nan_to_num(0).max()):.4g}], NaN: {bool(torch.isnan(x).any())}."
        )
    if config.observed_only:
        if observed is None:
            raise ValueError("attack observed_only is true but no observation mask was given.")
        if observed.shape != x.shape:
            raise ValueError(f"observation mask has shape {tuple(observed.shape)}; expected {tuple(x.shape)}.")
    source = last_observed_hour(torch.as_tensor(observed)) if config.forward_fill else None
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    lambdas = torch.tensor(config.lambdas, dtype=torch.float64, device=device)

    parts: list[dict[str, Tensor]] = []
    with input_gradient_mode(model):
        for start in range(0, n, config.chunk_size):
            stop = min(start + config.chunk_size, n)
            chunk_inputs = {name: value[start:stop].to(device) for name, value in inputs.items()}
            cell_mask = observed[start:stop].to(device=device, dtype=x.dtype) if config.observed_only else None
            chunk_source = None if source is None else source[start:stop].to(device)
            parts.append(_attack_chunk(model, x[start:stop].to(device), label[start:stop].to(device),
                                       chunk_inputs, cell_mask, lambdas, config, progress or _no_progress,
                                       chunk_source))
    merged = {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
    log.info("attacked %d records: %d succeeded, %.1f forward passes per record",
             n, int(merged["success"].sum()), float(merged["forward_passes"].double().mean()))
    return AttackResult(config=config, **merged)


def _attack_chunk(model: nn.Module, x: Tensor, label: Tensor, inputs: Mapping[str, Tensor],
                  cell_mask: Tensor | None, lambdas: Tensor, config: AttackConfig,
                  progress: Callable[[int], None] = _no_progress, source: Tensor | None = None) -> dict[str, Tensor]:
    """The λ search for one chunk of records: rounds of batched runs, each record at its own λ;
    `progress(n)` as n records finish. With `source` (forward_fill), the search moves measured cells and the
    model sees their change propagated to the filled hours."""

    def model_input(x_adv: Tensor, index: Tensor) -> Tensor:
        if source is None:
            return x_adv
        base = x[index]
        return base + propagate_forward_fill(x_adv - base, source[index])

    continuation = config.search == "continuation"
    n = x.shape[0]
    device = x.device
    search = _LambdaSearch(config.search, len(config.lambdas), n, device)
    best_l1 = torch.full((n,), math.inf, dtype=torch.float64, device=device)
    # Margins the search has already measured, so the refinement need not pass these records through again.
    clean_margin = torch.full((n,), math.nan, dtype=torch.float64, device=device)
    best_margin = torch.full((n,), math.nan, dtype=torch.float64, device=device)
    out = {
        "success": torch.zeros(n, dtype=torch.bool, device=device),
        "label": label.clone(),
        "lambda_best": torch.full((n,), math.nan, dtype=torch.float64, device=device),
        "first_iteration": torch.full((n,), -1, dtype=torch.long, device=device),
        "best_iteration": torch.full((n,), -1, dtype=torch.long, device=device),
        "delta_first": torch.zeros_like(x),
        "delta_best": torch.zeros_like(x),
        "runs": torch.zeros(n, dtype=torch.long, device=device),
        "forward_passes": torch.zeros(n, dtype=torch.long, device=device),
    }
    while (pending := search.pending()).numel():

        def forward(x_adv: Tensor, rows: Tensor, _pending: Tensor = pending) -> Tensor:
            index = _pending[rows]
            return model(model_input(x_adv, index), **{name: value[index] for name, value in inputs.items()})

        done_before = int(search.done.sum())
        # One continuation run is a record's whole search: it finishes when it leaves the run.
        run = _ista_run(forward, x[pending], label[pending], lambdas, search.next_index[pending],
                        None if cell_mask is None else cell_mask[pending], config,
                        continuation=continuation, finished=progress if continuation else _no_progress)
        out["runs"][pending] += 1
        out["forward_passes"][pending] += run.forward_passes
        clean_margin[pending] = run.clean_margin
        better = run.success & (run.best_l1 < best_l1[pending])
        rows = pending[better]
        best_l1[rows] = run.best_l1[better]
        best_margin[rows] = run.best_margin[better]
        out["success"][rows] = True
        out["lambda_best"][rows] = run.lambda_best[better]
        out["first_iteration"][rows] = run.first_iteration[better]
        out["best_iteration"][rows] = run.best_iteration[better]
        out["delta_first"][rows] = run.delta_first[better]
        out["delta_best"][rows] = run.delta_best[better]
        search.update(pending, run.success)
        search.done[rows[best_l1[rows] == 0]] = True  # δ = 0 succeeds: no λ can do better
        if not continuation:
            progress(int(search.done.sum()) - done_before)
    def forward_all(x_adv: Tensor, rows: Tensor) -> Tensor:
        return model(model_input(x_adv, rows), **{name: value[rows] for name, value in inputs.items()})

    candidates = torch.nonzero(out["success"] & (best_l1 > 0)).squeeze(1)  # δ = 0 flips: nothing to shrink
    if config.refine:
        refined, passes = refine_perturbation(forward_all, x, label, out["delta_best"], candidates, config.refine_steps,
                                              clean_margin[candidates], best_margin[candidates])
        out["delta_best"][candidates] = refined
        out["forward_passes"][candidates] += passes
    if config.polish_steps:
        polished, passes, improved, polished_margin = polish_perturbation(forward_all, x, label, out["delta_best"],
                                                                          candidates, config, cell_mask)
        out["forward_passes"][candidates] += passes
        out["delta_best"][candidates] = polished
        if config.refine:  # the descent's last improvement overshoots the boundary like the search's first flip
            improved_rows = candidates[improved]
            refined, passes = refine_perturbation(forward_all, x, label, out["delta_best"], improved_rows,
                                                  config.refine_steps, clean_margin[improved_rows],
                                                  polished_margin[improved])
            out["delta_best"][improved_rows] = refined
            out["forward_passes"][improved_rows] += passes
    if source is not None:  # report what the model saw: the measured changes and the hours filled from them
        for key in ("delta_first", "delta_best"):
            out[key] = propagate_forward_fill(out[key], source)
    return {key: value.cpu() for key, value in out.items()}


@torch.no_grad()
def refine_perturbation(forward: Forward, x: Tensor, label: Tensor, delta: Tensor, rows: Tensor,
                        steps: int, clean_margin: Tensor | None = None,
                        delta_margin: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Smaller flipping perturbations for records `rows` whose `delta[rows]` flips, by forward passes only.

    The ISTA iterate that first flips a label overshoots the decision boundary, and cells that
    moved early may no longer be needed. Two searches, batched over the records, fix both:
    (1) keep only the m largest |δ| cells, for the smallest m that still flips (bisection over
    m ∈ [1, L0]); (2) scale that δ by the smallest α ∈ (0, 1] that still flips. The margin along
    α·δ is close to linear, so (2) is a regula falsi (Illinois) on the margin, aimed just past
    zero: it stops once the margin is within 2^-steps of the record's clean margin or the bracket
    on α is 2^-steps wide (the precision of `steps` bisection steps, in about half the passes).
    Each candidate is checked by a forward pass and only flipping ones are kept, so the result
    flips, stays in the box (X + αδ lies between X and X + δ) and its L1 is never larger. Without
    gradients a pass costs about a third of an attack iteration. `clean_margin` (at δ = 0) and
    `delta_margin` (at `delta[rows]`), per record of `rows`, are margins the caller has already
    measured; NaN or None where it has not (each costs a pass here). Returns the refined δ and the
    passes per record.
    """
    passes = torch.zeros(rows.numel(), dtype=torch.long, device=x.device)
    if rows.numel() == 0:
        return delta[rows], passes
    base, target, current = x[rows], label[rows], delta[rows]
    shape = (-1, *([1] * (x.dim() - 1)))

    def margin(candidate: Tensor, which: Tensor) -> Tensor:
        passes[which] += 1
        return logit_margin(forward(base[which] + candidate, rows[which]), target[which]).to(torch.float64)

    def given(margins: Tensor | None) -> Tensor:
        if margins is None:
            return torch.full((rows.numel(),), math.nan, dtype=torch.float64, device=x.device)
        return margins.to(device=x.device, dtype=torch.float64).clone()

    def measure_missing(margins: Tensor, candidate: Tensor) -> None:
        missing = torch.nonzero(margins.isnan()).squeeze(1)
        if missing.numel():
            margins[missing] = margin(candidate[missing], missing)

    # (1) magnitude pruning: the smallest m whose m largest cells flip; m = L0 is δ itself.
    # (Ranking by |∇| or |δ·∇| instead cost a backward pass and gave the same L1 ±2 % on PhysioNet.)
    score = current.abs().flatten(1)
    ordered = score.sort(dim=1, descending=True).values
    low = torch.ones(rows.numel(), dtype=torch.long, device=x.device)
    high = (score > 0).sum(1)
    margin_high = given(delta_margin)
    for _ in range(steps):
        open_ = torch.nonzero(low < high).squeeze(1)
        if open_.numel() == 0:
            break
        middle = (low[open_] + high[open_]) // 2
        cut = ordered[open_].gather(1, (middle - 1)[:, None])
        tried = margin(current[open_] * (score[open_] >= cut).view_as(current[open_]), open_)
        ok = tried < 0
        high[open_] = torch.where(ok, middle, high[open_])
        low[open_] = torch.where(ok, low[open_], middle + 1)
        margin_high[open_] = torch.where(ok, tried, margin_high[open_])
    # `high` always flips (it starts at L0 and only takes verified values).
    cut = ordered.gather(1, (high - 1)[:, None])
    current = current * (score >= cut).view_as(current)

    # (2) scale towards the boundary: the smallest α whose α·δ flips; α = 1 does (margin_high < 0).
    measure_missing(margin_high, current)  # δ's own, where no pruning candidate was accepted
    margin_low = given(clean_margin)
    measure_missing(margin_low, torch.zeros_like(current))
    margin_low = margin_low.clamp(min=0)  # the clean margin (α = 0)
    tolerance = margin_low * 2.0 ** -steps
    low_alpha = torch.zeros(rows.numel(), dtype=torch.float64, device=x.device)
    high_alpha = torch.ones(rows.numel(), dtype=torch.float64, device=x.device)
    kept = torch.zeros(rows.numel(), dtype=torch.long, device=x.device)  # +1: high moved last, -1: low
    for _ in range(steps):
        open_ = torch.nonzero((margin_high < -tolerance) & (high_alpha - low_alpha > 2.0 ** -steps)).squeeze(1)
        if open_.numel() == 0:
            break
        lo, hi, m_lo, m_hi = low_alpha[open_], high_alpha[open_], margin_low[open_], margin_high[open_]
        # Where the line through the bracket's margins reaches -tolerance/2, kept strictly inside the bracket.
        aim = lo + (m_lo + tolerance[open_] / 2) / (m_lo - m_hi) * (hi - lo)
        alpha = torch.minimum(torch.maximum(aim, lo + (hi - lo) / 64), hi - (hi - lo) / 64)
        tried = margin(current[open_] * alpha.to(x.dtype).view(shape), open_)
        ok = tried < 0
        # Illinois: an end kept twice in a row has its margin halved, so the next aim moves off it.
        m_lo = torch.where(ok & (kept[open_] == 1), m_lo / 2, m_lo)
        m_hi = torch.where(~ok & (kept[open_] == -1), m_hi / 2, m_hi)
        low_alpha[open_] = torch.where(ok, lo, alpha)
        high_alpha[open_] = torch.where(ok, alpha, hi)
        margin_low[open_] = torch.where(ok, m_lo, tried)
        margin_high[open_] = torch.where(ok, tried, m_hi)
        kept[open_] = torch.where(ok, 1, -1)
    return current * high_alpha.to(x.dtype).view(shape), passes


def polish_perturbation(forward: Forward, x: Tensor, label: Tensor, delta: Tensor, rows: Tensor,
                        config: AttackConfig, cell_mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Smaller flipping perturbations for records `rows` whose `delta[rows]` flips, by a sparse L1 descent.

    Pruning and scaling keep the direction the search found; the smallest δ points elsewhere: at it the margin's
    gradient is equally steep on every cell it moves. Starting from δ, each record's iterate is projected into
    the L1 ball of radius `polish_shrink` × the smallest flipping L1 so far (∩ the box; the margin rises back
    above 0), then `polish_steps` times: margin and gradient at the iterate (one forward and backward pass); if
    it flips, it is the new best and the ball shrinks around it, else the ball widens a little (never to the
    best's L1); then a step of L1 length `polish_step_size` × radius on the `polish_top_k` cells with the
    steepest descent (`sparse_descent_direction`, the sparse L1 descent of adversarial training), projected back
    (`project_l1_box`). Only verified flips are kept, so the result flips, stays in the box and its L1 never
    grows. With `cell_mask`, only masked cells move.
    Returns δ of `rows`, the passes per record, which records improved and the margin at each improved δ (NaN
    for the others).
    """
    n = rows.numel()
    passes = torch.zeros(n, dtype=torch.long, device=x.device)
    best = delta[rows].flatten(1).clone()
    if n == 0:
        return (best.view(0, *x.shape[1:]), passes, torch.zeros(0, dtype=torch.bool, device=x.device),
                torch.zeros(0, dtype=torch.float64, device=x.device))
    base, target = x[rows].flatten(1), label[rows]
    lower, upper = -base, 1.0 - base
    if cell_mask is not None:
        movable_cells = cell_mask[rows].flatten(1) > 0
        lower, upper = lower * movable_cells, upper * movable_cells
    best_l1 = best.abs().sum(1, dtype=torch.float64)
    best_margin = torch.full((n,), math.nan, dtype=torch.float64, device=x.device)
    start_l1 = best_l1.clone()
    radius = best_l1 * config.polish_shrink
    current = project_l1_box(best, lower, upper, radius)
    k = min(config.polish_top_k, best.shape[1])
    for step_index in range(config.polish_steps):
        with torch.enable_grad():
            moving = current.clone().requires_grad_(True)
            margin = logit_margin(forward((base + moving).view(-1, *x.shape[1:]), rows), target)
            (gradient,) = torch.autograd.grad(margin.sum(), moving)
        passes += 1
        with torch.no_grad():
            l1 = current.abs().sum(1, dtype=torch.float64)
            improved = (margin < 0) & (l1 < best_l1)
            best[improved] = current[improved]
            best_l1[improved] = l1[improved]
            best_margin[improved] = margin.detach()[improved].to(torch.float64)
            # A flip shrinks the ball around the new best; a step that does not flip widens it again by
            # √(1/shrink), up to just below the best L1, so a ball shrunk past what the descent can flip recovers.
            radius = torch.where(improved, best_l1 * config.polish_shrink,
                                 torch.minimum(radius / math.sqrt(config.polish_shrink), best_l1 * (1 - 2.0 ** -10)))
            if step_index == config.polish_steps - 1:
                break  # the last iterate is judged; a step beyond it would never be
            step = sparse_descent_direction(-gradient, base + current, k,
                                            None if cell_mask is None else movable_cells)
            current = project_l1_box(current + (config.polish_step_size * radius).to(step.dtype)[:, None] * step,
                                     lower, upper, radius)
    return best.view(n, *x.shape[1:]), passes, best_l1 < start_l1, best_margin
