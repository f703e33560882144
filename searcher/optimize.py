"""`searcher optimize`: run (or resume) a study with any number of workers sharing its storage.

Each worker runs trials one at a time through `study.optimize(n_trials=1)`, which gives every trial Optuna's
heartbeat and fails the trials of workers that died (they are re-queued with the same parameters). Before each trial
the worker checks the study's n_trials over ALL workers, holding a study-wide claim lock (searcher.claim) until its
trial exists, so N workers together run exactly n_trials; when the budget is taken but other workers' trials are
still running, it waits for them, so that if one dies its retry still runs.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional

import optuna
from optuna.trial import FrozenTrial, TrialState

from searcher import checkpoints, records, space, storage as st
from searcher.claim import for_study as claim_for
from searcher.config import StudyConfig, resolved_dict
from searcher.errors import SearcherError, StudentError, first_line
from searcher.objective import Objective, SurplusTrial
from searcher.prepare import Prepared

log = logging.getLogger(__name__)

# trial-level errors: the trial fails with its reason and the worker goes on with the next one
TRIAL_ERRORS = (StudentError, SurplusTrial)
MAX_CONSECUTIVE_FAILURES = 3
STORAGE_RETRIES = 5


@dataclass
class Summary:
    study: optuna.Study
    ran: list[int] = field(default_factory=list)
    stopped_because: str = ""


def study_attrs(prepared: Prepared) -> dict:
    c = prepared.config
    return {
        st.ATTR_CONFIG: records.plain(resolved_dict(c)),
        st.ATTR_STUDY_FILE: st.redact_text(c.path.read_text(encoding="utf-8")),
        st.ATTR_TEACHER: records.plain(prepared.teacher_info),
        st.ATTR_DATASET: records.plain(prepared.task.description),
        st.ATTR_VERSIONS: st.versions(),
        st.ATTR_RANGES: space.describe_ranges(c),
    }


def open_study(prepared: Prepared, storage_url: Optional[str] = None) -> optuna.Study:
    """Create or resume the study and write its study-level records and seed trials (idempotent)."""
    c = prepared.config
    enqueued = space.check_enqueued(c)  # a bad [[enqueue]] must fail before the study is touched
    study = st.create_or_load(c, st.open_storage(c.storage_url(storage_url), c))
    st.record_study(study, study_attrs(prepared))
    for params in enqueued:
        study.enqueue_trial(params, skip_if_exists=True)
    return study


def _counts(study: optuna.Study) -> dict[TrialState, int]:
    counts = {s: 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state] += 1
    return counts


def run(prepared: Prepared, study: optuna.Study, n_trials: Optional[int] = None, timeout: Optional[float] = None,
        after_trial: Optional[list[Callable[[optuna.Study, FrozenTrial], None]]] = None,
        on_epoch=None, wait_for_others: bool = True) -> Summary:
    """Run trials until this worker's n_trials, the study's n_trials (all workers), or the timeout."""
    c = prepared.config
    budget = c.study.n_trials
    claim = claim_for(study)
    objective = Objective(prepared, budget=budget, on_epoch=on_epoch, on_start=claim.release)
    summary = Summary(study)
    callbacks = [_retention(c)] + list(after_trial or [])
    started = time.monotonic()
    failures = storage_errors = 0
    while True:
        if n_trials is not None and len(summary.ran) >= n_trials:
            summary.stopped_because = f"ran the {n_trials} trial(s) asked for"
            break
        if timeout is not None and time.monotonic() - started >= timeout:
            summary.stopped_because = f"timeout of {timeout:g}s reached"
            break
        objective.current = None
        try:
            if budget is not None:
                _fail_stale(study)
                claim.acquire()  # counting and creating the next trial is one step across workers
                counts = _counts(study)
                alive = sum(counts[s] for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING,
                                                 TrialState.WAITING))
                if alive >= budget and counts[TrialState.WAITING] == 0:
                    claim.release()
                    if counts[TrialState.RUNNING] and wait_for_others and _has_heartbeat(study):
                        time.sleep(min(5.0, max(0.5, c.study.heartbeat_interval / 4)))
                        continue
                    summary.stopped_because = f"the study has its n_trials = {budget}"
                    break
            study.optimize(objective, n_trials=1, catch=TRIAL_ERRORS, callbacks=callbacks, gc_after_trial=True)
            claim.release()
            last = _trial(study, objective.current)
            storage_errors = 0
        except KeyboardInterrupt:
            claim.release()
            if objective.current is not None:
                _requeue(study, objective.current)
            raise
        except Exception as e:
            claim.release()
            if not _is_storage_error(e):
                raise
            # the database went away (restart, network): finished trials are committed; a trial that was running
            # is failed by the heartbeat and retried. Reconnect (pool_pre_ping) a few times, then give up clearly.
            storage_errors += 1
            if storage_errors > STORAGE_RETRIES:
                raise SearcherError(f"lost the connection to the study storage ({first_line(e)}); finished trials "
                                    f"are saved: run the same command to continue") from e
            wait = 2.0 ** (storage_errors - 1)
            log.warning("storage: %s; reconnecting in %.0fs (%d of %d)", first_line(e), wait, storage_errors,
                        STORAGE_RETRIES)
            time.sleep(wait)
            if objective.current is not None:
                try:  # the trial that lost its connection was failed: run its parameters again
                    _requeue(study, objective.current)
                except Exception as again:  # noqa: BLE001 - still no database: the next round retries
                    log.warning("storage: could not queue trial %d again (%s)", objective.current, first_line(again))
            continue
        summary.ran.append(last.number)
        if last.state == TrialState.FAIL and not str(last.user_attrs.get(records.FAIL_REASON, "")).startswith(
                "SurplusTrial"):
            failures += 1
            if failures >= MAX_CONSECUTIVE_FAILURES:
                raise SearcherError(f"{failures} trials failed in a row (last: trial {last.number}: "
                                    f"{last.user_attrs.get(records.FAIL_REASON)}); fix the cause and run again")
        else:
            failures = 0
    return summary


def _is_storage_error(error: BaseException) -> bool:
    """A dropped or refused database connection (SQLAlchemy/DBAPI operational errors, Redis connection errors),
    also when Optuna wraps it (StorageInternalError)."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, optuna.exceptions.StorageInternalError):
            return True
        names = {cls.__name__ for cls in type(error).__mro__}
        if names & {"OperationalError", "InterfaceError", "DisconnectionError", "ConnectionError"} and \
                type(error).__module__.split(".")[0] in ("sqlalchemy", "psycopg2", "psycopg", "redis", "pymysql"):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def _trial(study: optuna.Study, number: int) -> FrozenTrial:
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def _has_heartbeat(study: optuna.Study) -> bool:
    """Without a heartbeat a dead worker's trial stays RUNNING forever: then nobody waits for it."""
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(study._storage)


def _fail_stale(study: optuna.Study) -> None:
    if _has_heartbeat(study):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)


def _requeue(study: optuna.Study, number: int) -> None:
    """After Ctrl-C or a lost database connection Optuna has marked the trial FAIL: queue its parameters again,
    so the next run (or the next round of this one) resumes it."""
    trial = _trial(study, number)
    if trial.state == TrialState.FAIL and trial.params:
        study.enqueue_trial(trial.params, user_attrs={"resumes_trial": number})


def _retention(config: StudyConfig) -> Callable[[optuna.Study, FrozenTrial], None]:
    def retain(study: optuna.Study, trial: FrozenTrial) -> None:
        checkpoints.retain(study, config.models_dir, config.study.keep_best)

    return retain
