"""Ask/tell for schedulers (Slurm arrays, CI matrices): train a trial that `optuna ask` created, and tell its result.

    optuna ask --storage URL --study-name NAME --search-space "$(searcher space STUDY.toml)"   # prints the number
    searcher run-trial STUDY.toml --trial-number N [M ...]

The trial runs through the same Objective as `searcher optimize` (records, checkpoints, artifacts, pruning), with a
heartbeat while it trains, and is told COMPLETE, PRUNED or FAIL. Several numbers run as a cohort round of `optimize`:
those of one student shape train together, each told its own result (the scheduler chose how many to ask).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Callable, Optional

import optuna
from optuna.trial import FrozenTrial, TrialState

from searcher import internals, records
from searcher.errors import StudyError
from searcher.search.objective import Objective
from searcher.run.optimize import open_study
from searcher.search.prepare import Prepared


class _Heartbeat:
    """Records the trial's heartbeat like `study.optimize` does, so a killed run-trial is failed and retried too."""

    def __init__(self, study: optuna.Study, trial_id: int):
        self.storage = internals.storage_of(study)
        self.trial_id = trial_id
        self.stop = threading.Event()
        interval = self.storage.get_heartbeat_interval() if hasattr(self.storage, "get_heartbeat_interval") else None
        self.interval = interval
        self.thread = threading.Thread(target=self._beat, daemon=True) if interval else None

    def _beat(self) -> None:
        while True:
            self.storage.record_heartbeat(self.trial_id)
            if self.stop.wait(self.interval):
                return

    def __enter__(self):
        if self.thread is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.thread is not None:
            self.thread.join()


def run_asked_trial(prepared: Prepared, number: int, storage_url: Optional[str] = None,
                    after_trial: Optional[list[Callable[[optuna.Study, FrozenTrial], None]]] = None) -> FrozenTrial:
    return run_asked_trials(prepared, [number], storage_url, after_trial)[0]


def run_asked_trials(prepared: Prepared, numbers: list[int], storage_url: Optional[str] = None,
                     after_trial: Optional[list[Callable[[optuna.Study, FrozenTrial], None]]] = None
                     ) -> list[FrozenTrial]:
    """Train the asked trials `numbers` (in cohorts where they share a shape) and tell each its result. Every
    number is checked before anything trains."""
    study = open_study(prepared, storage_url)
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    for number in numbers:
        frozen = by_number.get(number)
        if frozen is None:
            raise StudyError(f"study {study.study_name!r} has no trial {number}; create it with `optuna ask "
                             f"--storage URL --study-name {study.study_name} --search-space \"$(searcher space "
                             f"{prepared.config.path})\"`")
        if frozen.state != TrialState.RUNNING:
            raise StudyError(f"trial {number} is {frozen.state.name.lower()}, not running; `optuna ask` a new "
                             f"trial and pass its number")
    ids = [internals.trial_id(by_number[n]) for n in numbers]
    trials = [optuna.Trial(study, i) for i in ids]
    for trial in trials:
        trial.set_user_attr(records.SAMPLED_BY, "optuna ask (outside searcher: the asking process's sampler)")
    objective = Objective(prepared)  # n_trials is the scheduler's business in ask/tell
    told: set[int] = set()
    try:
        with contextlib.ExitStack() as beats:
            for i in ids:
                beats.enter_context(_Heartbeat(study, i))
            outcomes = objective.run_many(trials)
        for trial in trials:  # the objective recorded why a trial failed: it is told FAIL and the caller sees it
            outcome = outcomes.get(trial.number)
            if isinstance(outcome, optuna.TrialPruned):
                study.tell(trial, state=TrialState.PRUNED)
            elif isinstance(outcome, BaseException):
                study.tell(trial, state=TrialState.FAIL)
            else:
                study.tell(trial, outcome)
            told.add(trial.number)
    except BaseException:  # Ctrl-C: fail the trials not told yet, then stop
        for trial in trials:
            if trial.number not in told:
                with contextlib.suppress(Exception):
                    study.tell(trial, state=TrialState.FAIL)
        raise
    from searcher.records.checkpoints import retain

    retain(study, prepared.config.models_dir, prepared.config.study.keep_best)
    done = [internals.storage_of(study).get_trial(i) for i in ids]
    for frozen in done:
        for hook in after_trial or []:
            hook(study, frozen)
    return done
