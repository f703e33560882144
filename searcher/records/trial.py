"""What a study stores about each trial, and how it is read back.

Trials carry small, JSON-safe user attrs (readable in `optuna trials` and the dashboard); the per-epoch table is
stored column-wise so it stays compact. `TrialRecord.from_trial` is the one reader every later stage uses
(leaderboard, card, push, dashboard), so they never parse user attrs themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from searcher import internals

# user attr keys (keep in sync with README's "What a study stores")
HYPERPARAMS = "hyperparams"
STUDENT = "student"
BATCH = "batch"
RUNTIME = "runtime"
METRICS = "metrics"
TEST_METRICS = "test_metrics"
HISTORY = "history"
WALL_TIME = "wall_time_s"
LATENCY = "latency_ms"
SIZE = "size_mb"
MODEL_DIR = "model_dir"
PRUNE_REASON = "prune_reason"
FAIL_REASON = "fail_reason"
RECIPE = "recipe"  # optimizer, schedule and loss as the loop ran them (searcher.train.distill.recipe)
THRESHOLD = "threshold"  # multi-label with a tuned decision threshold: the one chosen on the validation split
LOSS_TERMS = "loss_terms"  # each distillation loss as it ran: name, weight, layer pairs, projection (searcher.losses)
PEAK_MEMORY = "peak_memory_mb"  # CUDA only
FORMATS = "formats"  # per deployable form (pytorch, onnx, onnx-int8): metrics, size, CPU latency, parity
EXPORT_REASON = "export_reason"  # why the trial has no ONNX files (an export or parity failure)
EXPORT_LOCAL_ERROR = "export_local_error"  # ... when that was this machine's trouble (a full disk): never carded
TEACHER_WEIGHTS = "teacher_weights"  # searched ensemble weights: {weights: {teacher: share}, metrics: the target's}
TRAINING_ROWS = "training_rows"  # {labeled, transfer, augmented}: what the trial trained on
STUDY_FILE = "study_file"  # hash of the study file version the trial ran under (study attr searcher:study_files)
SAMPLED_BY = "sampled_by"  # who chose the trial's parameters: the study's sampler, [[enqueue]], a retry, optuna ask
ENQUEUED_FROM = "enqueued_from"  # where an [[enqueue]] entry's values came from (its _source: `searcher import`)
SOURCE_PUBLISHED = "source_published"  # what that source published (its _published), for the card's baseline line
WARM_START_SOURCE = "warm_start_source"  # on a trial copied from another study ([study] warm_start): URL::NAME
WARM_START_TRIAL = "warm_start_trial"  # that trial's number in its own study
COHORT = "cohort"  # {size, trials}: the trials this one trained with in one step (searcher.train.cohort)

WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")  # a saved student's weights

# the per-epoch table: these columns, then one per metric the study computes (built-ins first)
HISTORY_LEAD = ("epoch", "step", "train_loss", "eval_loss", "cross_entropy")
HISTORY_TAIL = ("seconds",)


def plain(value: Any) -> Any:
    """JSON-safe copy: numpy scalars become Python numbers, tuples become lists, NaN/inf become None."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


TERM = "train_loss:"  # a history column of one loss term's training value ("train_loss:hidden_mse")


def history_columns(results: Sequence) -> dict:
    """EpochResults as {column: [values...]} (compact in `optuna trials`); with several distillation losses, one
    training-loss column per term after the total."""
    terms = [TERM + name for name in (results[0].terms or {})] if results else []
    names = list(HISTORY_LEAD[:3]) + terms + list(HISTORY_LEAD[3:]) + list(results[0].metrics if results else []) \
        + list(HISTORY_TAIL)
    cols: dict[str, list] = {c: [] for c in names}
    for r in results:
        row = {"epoch": r.epoch, "step": r.step, "train_loss": r.train_loss, "eval_loss": r.eval_loss,
               "cross_entropy": r.cross_entropy, "seconds": round(r.seconds, 3), **r.metrics,
               **{TERM + k: v for k, v in (r.terms or {}).items()}}
        for c in names:
            cols[c].append(plain(row.get(c)))
    return cols


def batch(batch_size: int, runtime) -> dict:
    """How an effective batch ran: micro-batches, accumulation steps and the evaluation batch."""
    micro = runtime.micro_for(batch_size)
    return {"effective": batch_size, "micro": micro, "accumulation": -(-batch_size // micro),
            "eval": runtime.eval_for(batch_size)}


def history_rows(columns: Optional[dict]) -> list[dict]:
    if not columns:
        return []
    n = len(columns.get("epoch", []))
    return [{c: columns[c][i] for c in columns if i < len(columns[c])} for i in range(n)]


@dataclass(frozen=True)
class TrialRecord:
    number: int
    trial_id: int
    state: str
    values: Optional[list[float]]
    params: dict
    hyperparams: dict
    student: dict
    batch: dict
    runtime: dict
    metrics: dict
    test_metrics: dict
    history: list[dict]
    wall_time_s: Optional[float]
    latency_ms: dict
    size_mb: Optional[float]
    model_dir: Optional[str]
    prune_reason: Optional[str]
    fail_reason: Optional[str]
    recipe: dict
    loss_terms: list
    threshold: Optional[float]
    peak_memory_mb: Optional[float]
    study_file: Optional[str]
    sampled_by: Optional[str]
    formats: dict
    export_reason: Optional[str]
    training_rows: dict
    retry_of: Optional[int]
    enqueued_from: Optional[str]
    source_published: list
    datetime_start: Optional[str]
    datetime_complete: Optional[str]

    @classmethod
    def from_trial(cls, trial: FrozenTrial) -> "TrialRecord":
        a = trial.user_attrs
        return cls(
            number=trial.number,
            trial_id=internals.trial_id(trial),
            state=trial.state.name,
            values=list(trial.values) if trial.values is not None else None,
            params=dict(trial.params),
            hyperparams=a.get(HYPERPARAMS, {}),
            student=a.get(STUDENT, {}),
            batch=a.get(BATCH, {}),
            runtime=a.get(RUNTIME, {}),
            metrics=a.get(METRICS, {}),
            test_metrics=a.get(TEST_METRICS, {}),
            history=history_rows(a.get(HISTORY)),
            wall_time_s=a.get(WALL_TIME),
            latency_ms=a.get(LATENCY, {}) or {},
            size_mb=a.get(SIZE),
            model_dir=a.get(MODEL_DIR),
            prune_reason=a.get(PRUNE_REASON),
            fail_reason=a.get(FAIL_REASON),
            recipe=a.get(RECIPE, {}),
            loss_terms=a.get(LOSS_TERMS) or [],
            threshold=a.get(THRESHOLD),
            peak_memory_mb=a.get(PEAK_MEMORY),
            study_file=a.get(STUDY_FILE),
            sampled_by=a.get(SAMPLED_BY),
            formats=a.get(FORMATS) or {},
            export_reason=a.get(EXPORT_REASON),
            training_rows=a.get(TRAINING_ROWS) or {},
            retry_of=trial.system_attrs.get("failed_trial"),
            enqueued_from=a.get(ENQUEUED_FROM),
            source_published=a.get(SOURCE_PUBLISHED) or [],
            datetime_start=trial.datetime_start.isoformat(timespec="seconds") if trial.datetime_start else None,
            datetime_complete=(trial.datetime_complete.isoformat(timespec="seconds")
                               if trial.datetime_complete else None),
        )

    @property
    def kept(self) -> bool:
        """Whether its saved student is still on disk with its weights (only the best k are kept). Whether the
        folder is really this trial's is checked when it is carded (searcher.records.checkpoints.problem)."""
        if not self.model_dir:
            return False
        folder = Path(self.model_dir)
        return (folder / "config.json").is_file() and any((folder / w).is_file() for w in WEIGHTS)

    @property
    def teacher_labeled_rows(self) -> int:
        """Rows only the teacher labelled (transfer text and augmented copies) that this trial trained on."""
        return int(self.training_rows.get("transfer", 0)) + int(self.training_rows.get("augmented", 0))

    @property
    def student_label(self) -> str:
        s = self.student
        if s.get("family") == "static":
            return f"static/D{s.get('static_dim')} ({s.get('static_head')}, " \
                   f"{'trained' if s.get('static_train_embeddings') else 'frozen'} table)"
        if s.get("layers") and s.get("hidden"):
            label = f"L{s['layers']}/H{s['hidden']}/A{s.get('heads', '?')}"
        else:
            label = "?"
        if s.get("checkpoint") and s.get("init") == "pretrained" and "{" not in str(s.get("checkpoint")):
            label += f" ({s['checkpoint']})"
        elif s.get("init") and s.get("init") != "pretrained":
            label += f" (init {s['init']})"
        return label


def is_warm_start(trial: FrozenTrial) -> bool:
    """A trial copied from another study by [study] warm_start: history for the sampler, not this study's work."""
    return WARM_START_SOURCE in trial.user_attrs


def own_trials(study: optuna.Study, states: Optional[Sequence[TrialState]] = None) -> list[FrozenTrial]:
    """This study's own trials, without warm-start copies. Everything that counts or shows trials (the n_trials
    budget, the leaderboard, cards, the dashboard note, checkpoint retention) reads trials through here; only the
    sampler sees the copies (they are COMPLETE trials in the study, which is what warm start is for)."""
    trials = study.get_trials(deepcopy=False, states=tuple(states) if states is not None else None)
    return [t for t in trials if not is_warm_start(t)]


def completed(study: optuna.Study) -> list[FrozenTrial]:
    return own_trials(study, (TrialState.COMPLETE,))


def _signs(study: optuna.Study) -> list[float]:
    """+1 for a maximised objective, -1 for a minimised one: sign * value is larger when better."""
    return [1.0 if d == optuna.study.StudyDirection.MAXIMIZE else -1.0 for d in study.directions]


def _dominates(a: FrozenTrial, b: FrozenTrial, signs: list[float]) -> bool:
    better = [s * x for s, x in zip(signs, a.values)]
    worse = [s * y for s, y in zip(signs, b.values)]
    return all(x >= y for x, y in zip(better, worse)) and better != worse


def ranked(study: optuna.Study, trials: Optional[list[FrozenTrial]] = None) -> list[FrozenTrial]:
    """Complete trials, best first: the one rule for "best" everywhere (the leaderboard, the best student
    `searcher optimize` names, `card --best`, `push`, `[hub] push = "best"`, `--top K`, checkpoint retention, the
    dashboard note, a card's rank).

    Single objective: by its value, ties to the earlier trial. Multi-objective: Pareto fronts in turn (the front,
    then the front of the trials left, and so on), so no trial is ever ranked above a trial that dominates it; within
    a front by the first objective, ties broken by the next objectives in order, then by trial number. So the best
    trial of a multi-objective study is the Pareto-front trial best by the first objective. (With one objective the
    fronts are the distinct values in order, and both rules are the same.)
    """
    signs = _signs(study)
    left = sorted(completed(study) if trials is None else trials,
                  key=lambda t: ([-s * v for s, v in zip(signs, t.values)], t.number))
    out: list[FrozenTrial] = []
    while left:  # a few hundred trials at most: the quadratic peel costs nothing next to one trial
        front = [t for t in left if not any(_dominates(o, t, signs) for o in left)]
        out += front  # `left` is sorted, so each front is too
        numbers = {t.number for t in front}
        left = [t for t in left if t.number not in numbers]
    return out


def best(study: optuna.Study) -> Optional[FrozenTrial]:
    """The study's best complete trial by the rule of `ranked`, or None before the first."""
    order = ranked(study)
    return order[0] if order else None


def pareto(study: optuna.Study) -> list[FrozenTrial]:
    """The Pareto front (multi-objective) or the best trial (single objective) of this study's own trials, in the
    order of `ranked`. Not study.best_trials: a warm-start copy may not dominate, nor be on, this study's front."""
    if len(study.directions) == 1:
        return ranked(study)[:1]
    signs = _signs(study)
    trials = completed(study)
    return ranked(study, [t for t in trials if not any(_dominates(o, t, signs) for o in trials)])


def rank_of(study: optuna.Study, number: int) -> Optional[int]:
    for i, t in enumerate(ranked(study), start=1):
        if t.number == number:
            return i
    return None


def state_counts(study: optuna.Study) -> dict[str, int]:
    counts = {s.name: 0 for s in TrialState}
    for t in own_trials(study):
        counts[t.state.name] += 1
    return counts


def select(study: optuna.Study, trial: Optional[int] = None, top: Optional[int] = None,
           pareto_front: bool = False) -> list[FrozenTrial]:
    """The trials a card/push command is about: one by number, the top k, the Pareto front, or the best."""
    from searcher.errors import StudyError

    if trial is not None:
        found = [t for t in study.get_trials(deepcopy=False) if t.number == trial]
        if not found:
            raise StudyError(f"study {study.study_name!r} has no trial {trial}; `searcher best` lists its trials")
        t = found[0]
        if is_warm_start(t):
            raise StudyError(f"trial {trial} is a copy of trial {t.user_attrs.get(WARM_START_TRIAL)} of "
                             f"{t.user_attrs[WARM_START_SOURCE]} ([study] warm_start), not trained by this study; "
                             f"pick one from `searcher best`")
        if t.state != TrialState.COMPLETE:
            reason = t.user_attrs.get(PRUNE_REASON) or t.user_attrs.get(FAIL_REASON) or "it did not finish"
            raise StudyError(f"trial {trial} is {t.state.name.lower()} ({reason}); only complete trials get a card "
                             f"or a push: pick one from `searcher best`")
        return [t]
    if pareto_front:
        chosen = pareto(study)
    else:
        chosen = ranked(study)[: (top or 1)]
    if not chosen:
        raise StudyError(f"study {study.study_name!r} has no complete trial yet; run `searcher optimize` first")
    return chosen
