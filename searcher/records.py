"""What a study stores about each trial, and how it is read back.

Trials carry small, JSON-safe user attrs (readable in `optuna trials` and the dashboard); the per-epoch table is
stored column-wise so it stays compact. `TrialRecord.from_trial` is the one reader every later stage uses
(leaderboard, card, push, dashboard), so they never parse user attrs themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

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

HISTORY_COLUMNS = ("epoch", "step", "train_loss", "eval_loss", "accuracy", "f1", "precision", "recall", "seconds")


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


def history_columns(results: Sequence) -> dict:
    """EpochResults as {column: [values...]} (compact in `optuna trials`)."""
    cols: dict[str, list] = {c: [] for c in HISTORY_COLUMNS}
    for r in results:
        row = {"epoch": r.epoch, "step": r.step, "train_loss": r.train_loss, "eval_loss": r.eval_loss,
               "seconds": round(r.seconds, 3), **r.metrics}
        for c in HISTORY_COLUMNS:
            cols[c].append(plain(row.get(c)))
    return cols


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
    retry_of: Optional[int]
    datetime_start: Optional[str]
    datetime_complete: Optional[str]
    intermediate: dict = field(default_factory=dict)

    @classmethod
    def from_trial(cls, trial: FrozenTrial) -> "TrialRecord":
        a = trial.user_attrs
        return cls(
            number=trial.number,
            trial_id=trial._trial_id,
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
            retry_of=trial.system_attrs.get("failed_trial"),
            datetime_start=trial.datetime_start.isoformat(timespec="seconds") if trial.datetime_start else None,
            datetime_complete=(trial.datetime_complete.isoformat(timespec="seconds")
                               if trial.datetime_complete else None),
            intermediate=dict(trial.intermediate_values),
        )

    @property
    def kept(self) -> bool:
        """Whether its saved student is still on disk (only the best k are kept)."""
        return bool(self.model_dir) and (Path(self.model_dir) / "config.json").is_file()

    @property
    def student_label(self) -> str:
        s = self.student
        if s.get("layers") and s.get("hidden"):
            label = f"L{s['layers']}/H{s['hidden']}/A{s.get('heads', '?')}"
        else:
            label = "?"
        if s.get("checkpoint") and s.get("init") == "pretrained" and "{" not in str(s.get("checkpoint")):
            label += f" ({s['checkpoint']})"
        elif s.get("init") and s.get("init") != "pretrained":
            label += f" (init {s['init']})"
        return label


def completed(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def ranked(study: optuna.Study, trials: Optional[list[FrozenTrial]] = None) -> list[FrozenTrial]:
    """Complete trials, best first by the first objective (the task metric); ties go to the earlier trial."""
    trials = completed(study) if trials is None else trials
    sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
    return sorted(trials, key=lambda t: (sign * t.values[0], t.number))


def pareto(study: optuna.Study) -> list[FrozenTrial]:
    """The Pareto front (multi-objective) or the best trial (single objective), ranked by the first objective."""
    if len(study.directions) == 1:
        return ranked(study)[:1]
    return ranked(study, list(study.best_trials))


def rank_of(study: optuna.Study, number: int) -> Optional[int]:
    for i, t in enumerate(ranked(study), start=1):
        if t.number == number:
            return i
    return None


def state_counts(study: optuna.Study) -> dict[str, int]:
    counts = {s.name: 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
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
