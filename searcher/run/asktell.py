"""Ask/tell for schedulers (Slurm arrays, CI matrices): train a trial that `optuna ask` created, and tell its result.

    optuna ask --storage URL --study-name NAME --search-space "$(searcher space STUDY.toml)"   # prints the number
    searcher run-trial STUDY.toml --trial-number N

The trial runs through the same Objective as `searcher optimize` (records, checkpoints, artifacts, pruning), with a
heartbeat while it trains, and is told COMPLETE, PRUNED or FAIL.
"""

from __future__ import annotations

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
    study = open_study(prepared, storage_url)
    found = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    if not found:
        raise StudyError(f"study {study.study_name!r} has no trial {number}; create it with `optuna ask "
                         f"--storage URL --study-name {study.study_name} --search-space \"$(searcher space "
                         f"{prepared.config.path})\"`")
    frozen = found[0]
    if frozen.state != TrialState.RUNNING:
        raise StudyError(f"trial {number} is {frozen.state.name.lower()}, not running; `optuna ask` a new trial "
                         f"and pass its number")
    trial = optuna.Trial(study, internals.trial_id(frozen))
    trial.set_user_attr(records.SAMPLED_BY, "optuna ask (outside searcher: the asking process's sampler)")
    objective = Objective(prepared)  # n_trials is the scheduler's business in ask/tell
    try:
        with _Heartbeat(study, internals.trial_id(frozen)):
            values = objective(trial)
    except optuna.TrialPruned:
        study.tell(trial, state=TrialState.PRUNED)
    except Exception:  # the objective recorded why: the trial is told FAIL and the caller sees its reason
        study.tell(trial, state=TrialState.FAIL)
    except BaseException:  # Ctrl-C: fail the trial, then stop
        study.tell(trial, state=TrialState.FAIL)
        raise
    else:
        study.tell(trial, values)
    done = internals.storage_of(study).get_trial(internals.trial_id(frozen))
    from searcher.records.checkpoints import retain

    retain(study, prepared.config.models_dir, prepared.config.study.keep_best)
    for hook in after_trial or []:
        hook(study, done)
    return done

