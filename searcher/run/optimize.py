"""`searcher optimize`: run (or resume) a study with any number of workers sharing its storage.

Each worker runs trials one at a time through `study.optimize(n_trials=1)`, which gives every trial Optuna's
heartbeat and fails the trials of workers that died (they are re-queued with the same parameters). With
`[train] cohort = K` it asks the sampler for up to K trials at once instead (TPE's constant liar keeps them apart),
trains those of one shape together (searcher.train.cohort) and tells each its own result, with the same heartbeat,
budget, callbacks and Ctrl-C requeueing. Before each trial
the worker checks the study's n_trials over ALL workers, holding a study-wide claim lock (searcher.search.claim) until its
trial exists, so N workers together run exactly n_trials; when the budget is taken but other workers' trials are
still running, it waits for them, so that if one dies its retry still runs. With `[study] stop = {...}` each
worker also checks, before it claims a trial, whether the study has stopped improving (searcher.search.strategy.stop_reason):
the first to see it records the reason on the study (storage.ATTR_STOPPED), and every worker ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import optuna
from optuna.trial import FrozenTrial, TrialState

from searcher.records import checkpoints, storage as st
from searcher import files, internals, records, timing
from searcher.search import space, strategy, warmstart
from searcher.records.checkpoints import CheckpointError
from searcher.search.claim import for_study as claim_for
from searcher.config import StudyConfig, changed_settings, defining, resolved_dict
from searcher.errors import ConfigError, ExportFailed, SearcherError, StudentError, SurplusTrial, first_line
from searcher.search.objective import Finishing, Objective
from searcher.search.prepare import Prepared
from searcher.train.runtime import cohort_size, finish_in_background

log = logging.getLogger(__name__)

# trial-level errors: the trial fails with its reason and the worker goes on with the next one
TRIAL_ERRORS = (StudentError, SurplusTrial, ExportFailed, CheckpointError)
MAX_CONSECUTIVE_FAILURES = 3
STORAGE_RETRIES = 5


@dataclass
class Summary:
    study: optuna.Study
    ran: list[int] = field(default_factory=list)
    stopped_because: str = ""


def study_attrs(prepared: Prepared, study: optuna.Study) -> dict:
    c = prepared.config
    sha, text = st.study_file(c)
    return {
        st.ATTR_CONFIG: records.plain(resolved_dict(c)),
        st.ATTR_STUDY_FILE: text,
        st.ATTR_STUDY_FILES: {**study.user_attrs.get(st.ATTR_STUDY_FILES, {}), sha: text},
        st.ATTR_TEACHER: records.plain(prepared.teacher_info),
        st.ATTR_DATASET: records.plain(prepared.task.description),
        st.ATTR_VERSIONS: st.versions(),
        st.ATTR_RANGES: space.describe_ranges(c),
        **strategy.strategy_attrs(c),
    }


def defines(prepared: Prepared) -> dict:
    """What defines this study's trials: the trial-defining settings and the content of its data and teacher."""
    return records.plain({**defining(prepared.config), "[data] content": prepared.task.fingerprint,
                          "[data] transfer content": prepared.task.transfer_fingerprint,
                          "[teacher] content": prepared.teacher_identity})


def open_study(prepared: Prepared, storage_url: Optional[str] = None) -> optuna.Study:
    """Create or resume the study and write its study-level records and seed trials (idempotent). A resumed study
    must still be defined as it was: changed trial settings are refused before anything is written."""
    c = prepared.config
    enqueued = space.enqueued(c)  # a bad [[enqueue]] must fail before the study is touched
    url = c.storage_url(storage_url)
    st.check_writable(url)
    owner = _output_dir_owner(c, url)
    storage = st.open_storage(url, c)
    if owner is not None:
        _check_owner(c, storage, url, owner)
    warm = warmstart.pending(c, storage, url)  # so is a warm_start source that is missing or does not fit
    study = st.create_or_load(c, storage, strategy.sampler_for(c), strategy.pruner_for(c))
    now = defines(prepared)
    before = study.user_attrs.get(st.ATTR_DEFINES)
    _refuse_changes(c, url, changed_settings(before, now) if before is not None else [])
    uid = study.user_attrs.get(st.ATTR_UID) or uuid.uuid4().hex
    st.record_study(study, {st.ATTR_UID: uid, st.ATTR_DEFINES: now, **study_attrs(prepared, study)})
    if owner is None:
        files.write_text(c.output_dir / OWNER, json.dumps({"study": c.study.name, "uid": uid,
                                                           "storage": st.redact(url)}, indent=1))
    for stale in files.remove_stale(c.models_dir):
        log.info("checkpoints: removed %s, left by a run that crashed while saving", stale.name)
    warmstart.add(study, c, warm)  # history before the first trial; sources already copied are skipped
    for params, attrs in enqueued:
        study.enqueue_trial(params, user_attrs=attrs or None, skip_if_exists=True)
    return study


DATA_CONTENT = ("[data] content", "[data] transfer content")


def check_data(config: StudyConfig, task, storage_url: Optional[str] = None) -> None:
    """Refuse data that changed under a resumed study as soon as it is read (prepare's `check_data`): before the
    teacher labels a changed transfer file's rows, not after. The other settings are checked by open_study."""
    url = config.storage_url(storage_url)
    file = st.storage_file(url)
    if file is not None and not Path(file).exists():
        return  # a new study: nothing to compare with (and no database is created before the input is checked)
    storage = st.open_storage(url, config)
    try:
        before = storage.get_study_user_attrs(storage.get_study_id_from_name(config.study.name)).get(st.ATTR_DEFINES)
    except KeyError:
        return
    if before is None:
        return
    now = records.plain({"[data] content": task.fingerprint, "[data] transfer content": task.transfer_fingerprint})
    _refuse_changes(config, url, changed_settings({k: before.get(k) for k in DATA_CONTENT}, now))


def _refuse_changes(c: StudyConfig, url: str, changes: list[str]) -> None:
    if changes:
        more = f" and {len(changes) - 1} more" if len(changes) > 1 else ""
        raise ConfigError(f"{c.path}: study {c.study.name!r} in {st.redact(url)} has trials of other settings "
                          f"({changes[0]}{more}); they would not be comparable: use a new [study] name for the new "
                          f"settings (n_trials, timeout, [card] and [hub] may change freely)")


OWNER = ".searcher-study.json"  # in output_dir: which study (uid, storage) its models belong to


def _output_dir_owner(c: StudyConfig, url: str) -> Optional[dict]:
    """The study that owns output_dir (None: nobody yet). Two studies writing models/trial-NNNN into one folder
    would overwrite each other's students, and a card could ship one study's model under the other's name."""
    owner = files.read_json(c.output_dir / OWNER)
    file = st.storage_file(url) if url.startswith("sqlite:") else None
    if owner is not None and file is not None and not Path(file).exists():
        _refuse_output_dir(c, url, owner)  # a study in a database that does not exist yet cannot be the owner
    return owner


def _check_owner(c: StudyConfig, storage, url: str, owner: dict) -> None:
    try:
        uid = storage.get_study_user_attrs(storage.get_study_id_from_name(c.study.name)).get(st.ATTR_UID)
    except KeyError:
        uid = None  # this study does not exist yet in this storage
    if owner.get("uid") != uid:
        _refuse_output_dir(c, url, owner)


def _refuse_output_dir(c: StudyConfig, url: str, owner: dict) -> None:
    raise ConfigError(f"{c.path}: {c.output_dir} holds the models of study {owner.get('study')!r} in "
                      f"{owner.get('storage')}, not of study {c.study.name!r} in {st.redact(url)}; set [study] "
                      f"output_dir to a folder of its own")


def _counts(study: optuna.Study) -> dict[TrialState, int]:
    """This study's own trials by state: warm-start copies are not part of its n_trials."""
    counts = {s: 0 for s in TrialState}
    for t in records.own_trials(study):
        counts[t.state] += 1
    return counts


def run(prepared: Prepared, study: optuna.Study, n_trials: Optional[int] = None, timeout: Optional[float] = None,
        after_trial: Optional[list[Callable[[optuna.Study, FrozenTrial], None]]] = None,
        on_epoch=None, wait_for_others: bool = True) -> Summary:
    """Run trials until this worker's n_trials, the study's n_trials (all workers), or the timeout."""
    c = prepared.config
    claim = claim_for(study)
    background = finish_in_background(c.train.finish_in_background, prepared.runtime.device)
    objective = Objective(prepared, budget=c.study.n_trials, on_epoch=on_epoch, on_start=claim.release,
                          background=background)
    summary = Summary(study)
    callbacks = [_timed(callback) for callback in [_retention(c)] + list(after_trial or [])]
    pending = Pending(study, callbacks)  # trials whose students are finished in the background, told when done
    started = time.monotonic()
    failures = storage_errors = 0
    seen: dict = {}  # the stop rule's last verdict, by the number of finished trials it saw
    size = cohort_size(c.train.cohort, prepared.runtime.device)

    def told(numbers: list[int]) -> None:
        nonlocal failures
        summary.ran.extend(numbers)
        for number in numbers:
            failures = _consecutive_failures(_trial(study, number), failures)

    try:
        while True:
            told(pending.tell_done(wait_beyond=Pending.BACKLOG))
            summary.stopped_because = _limit_reached(len(summary.ran) + len(pending), n_trials, timeout, started)
            if summary.stopped_because:
                break
            objective.current = None
            try:
                summary.stopped_because = _stop_check(study, prepared, seen)
                if summary.stopped_because:
                    break
                left = n_trials - len(summary.ran) - len(pending) if n_trials is not None else size
                verdict, count = _claim_next(study, claim, c, wait_for_others, min(size, left))
                if verdict == WAIT:
                    continue
                if verdict:
                    summary.stopped_because = verdict
                    break
                if count > 1 or background:
                    told(_round(study, objective, claim, count, callbacks, pending))
                    storage_errors = 0
                    continue
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
                storage_errors += 1
                _recover(study, e, storage_errors, objective.current)
                continue
            told([last.number])
        told(pending.tell_done(wait_beyond=0))
    except KeyboardInterrupt:
        if pending:  # trained already: their students are saved and told, unless Ctrl-C comes again
            log.warning("interrupted: waiting for %d trial(s) finishing in the background (Ctrl-C again to drop "
                        "them)", len(pending))
            try:
                told(pending.tell_done(wait_beyond=0))
            except KeyboardInterrupt:
                objective.close(wait=False)
                pending.abandon()
        raise
    except BaseException:
        with contextlib.suppress(Exception):  # the trials finishing in the background are still told
            pending.tell_done(wait_beyond=0)
        raise
    finally:
        objective.close()
    return summary


class Pending:
    """Trials whose kept students are being finished in the background (Objective.finisher), still RUNNING with
    their heartbeat, and told (with the callbacks, as study.optimize would) once their value is known."""

    BACKLOG = 2  # at most this many trials wait for the finisher: beyond, the worker waits before training more

    def __init__(self, study: optuna.Study, callbacks: list):
        self.study, self.callbacks = study, callbacks
        self.items: list[tuple[optuna.Trial, Finishing, contextlib.ExitStack]] = []

    def __len__(self) -> int:
        return len(self.items)

    def add(self, trial: optuna.Trial, finishing: Finishing, heartbeat: contextlib.ExitStack) -> None:
        self.items.append((trial, finishing, heartbeat))

    def tell_done(self, wait_beyond: int) -> list[int]:
        """Tell the trials whose finishing is done, first waiting (oldest first) while more than `wait_beyond`
        are not; returns the numbers told."""
        numbers, raised = [], None
        while self.items:
            trial, finishing, heartbeat = self.items[0]
            if not finishing.future.done() and len(self.items) <= wait_beyond:
                break
            self.items.pop(0)
            with heartbeat:
                error = finishing.future.exception()
                outcome = error if error is not None else finishing.future.result()
                if _tell(self.study, trial, outcome, self.callbacks):
                    raised = raised or outcome
            numbers.append(trial.number)
        if raised is not None:
            raise raised
        return numbers

    def numbers(self) -> set[int]:
        return {trial.number for trial, _, _ in self.items}

    def abandon(self) -> None:
        """Ctrl-C: fail the trials not told yet and queue them again (their finishing is dropped or ends alone)."""
        for trial, _, heartbeat in self.items:
            with heartbeat:
                with contextlib.suppress(Exception):
                    self.study.tell(trial, state=TrialState.FAIL)
                _requeue(self.study, trial.number)
        self.items.clear()


WAIT = "wait"


def _stop_check(study: optuna.Study, prepared: Prepared, seen: dict) -> str:
    """The study's stop rule ([study] stop), checked before each claim: the reason to stop, recorded on the study
    for the card and the dashboard note, or "" (an earlier stop's reason is cleared: the study runs on). A worker
    waiting for others' trials asks again only once another trial has finished (the terminator fits a GP)."""
    c = prepared.config
    finished = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
    if finished not in seen:
        seen.clear()
        seen[finished] = "" if c.study.stop is None else strategy.stop_reason(
            study, dataclasses.asdict(c.study.stop), c.study.objectives[0], len(prepared.task.validation),
            seed=c.study.seed)
    reason = seen[finished]
    if study.user_attrs.get(st.ATTR_STOPPED, "") != reason:
        study.set_user_attr(st.ATTR_STOPPED, reason)
    return reason


def _limit_reached(ran: int, n_trials: Optional[int], timeout: Optional[float], started: float) -> str:
    if n_trials is not None and ran >= n_trials:
        return f"ran the {n_trials} trial(s) asked for"
    if timeout is not None and time.monotonic() - started >= timeout:
        return f"timeout of {timeout:g}s reached"
    return ""


def _claim_next(study: optuna.Study, claim, c: StudyConfig, wait_for_others: bool, want: int = 1
                ) -> tuple[str, int]:
    """Hold the claim lock and decide: ("", k) (go on with k <= `want` trials: the lock stays held until they
    exist), (WAIT, 0) (the budget is taken but others' trials still run: their retries may need this worker), or
    (why to stop, 0)."""
    budget = c.study.n_trials
    if budget is None:
        if want > 1:
            claim.acquire()
        return "", want
    claim.acquire()  # counting and creating the next trials is one step across workers
    # a dead worker's trial is failed and its retry queued inside that step: Optuna queues the retry a moment after
    # the fail, and a worker counting in between would start a new trial and the retry would then be one too many
    _fail_stale(study)
    counts = _counts(study)
    alive = sum(counts[s] for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING))
    if alive < budget:
        return "", min(want, budget - alive + counts[TrialState.WAITING])
    if counts[TrialState.WAITING]:
        return "", min(want, counts[TrialState.WAITING])
    claim.release()
    if counts[TrialState.RUNNING] and wait_for_others and _has_heartbeat(study):
        time.sleep(min(5.0, max(0.5, c.study.heartbeat_interval / 4)))
        return WAIT, 0
    return f"the study has its n_trials = {budget}", 0


def _round(study: optuna.Study, objective: Objective, claim, count: int, callbacks: list,
           pending: Pending) -> list[int]:
    """Ask `count` trials (under the claim lock, released once they exist), train them (in cohorts where they fit)
    and tell each its outcome, as study.optimize would: a heartbeat per trial, the trial-level errors failing only
    their trial, the callbacks after each. A trial whose student is finished in the background goes to `pending`
    with its heartbeat, told later. Ctrl-C fails and requeues every trial not told yet."""
    try:
        with warnings.catch_warnings():  # optuna warns that heartbeats belong to study.optimize: they are given below
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trials = [study.ask() for _ in range(count)]
    finally:
        claim.release()
    told: list[int] = []
    beats = {trial.number: contextlib.ExitStack() for trial in trials}
    try:
        for trial in trials:
            beats[trial.number].enter_context(internals.heartbeat(study, trial))
        outcomes = objective.run_many(trials)
        raised = None
        for trial in trials:
            outcome = outcomes.get(trial.number)
            if isinstance(outcome, Finishing):
                pending.add(trial, outcome, beats.pop(trial.number))
                continue
            with beats.pop(trial.number):
                if _tell(study, trial, outcome, callbacks):
                    raised = raised or outcome
            told.append(trial.number)
        gc.collect()
        if raised is not None:
            raise raised
    except KeyboardInterrupt:
        objective.current = None  # requeued here, every one of them (the caller requeues a single trial)
        for trial in trials:
            if trial.number not in told and trial.number not in pending.numbers():
                with contextlib.suppress(Exception):
                    study.tell(trial, state=TrialState.FAIL)
                _requeue(study, trial.number)
        raise
    finally:
        for beat in beats.values():
            beat.close()
    return told


def _tell(study: optuna.Study, trial: optuna.Trial, outcome, callbacks: list) -> bool:
    """Tell a trial its outcome (value(s), TrialPruned, or the error that failed it) and run the callbacks; True
    when the error is not a trial-level one (the worker must stop with it once the others are told)."""
    fatal = False
    if isinstance(outcome, optuna.TrialPruned):
        frozen = study.tell(trial, state=TrialState.PRUNED)
    elif isinstance(outcome, BaseException):
        frozen = study.tell(trial, state=TrialState.FAIL)
        if not isinstance(outcome, TRIAL_ERRORS):
            log.warning("trial %d failed: %s", trial.number, first_line(outcome))
            fatal = True
    else:
        frozen = study.tell(trial, outcome)
    for callback in callbacks:
        callback(study, frozen)
    return fatal


def _timed(callback: Callable[[optuna.Study, FrozenTrial], None]) -> Callable[[optuna.Study, FrozenTrial], None]:
    """A callback whose time counts as the "after trial" phase (retention, progress, reports, cards)."""
    def call(study: optuna.Study, trial: FrozenTrial) -> None:
        with timing.phase("after trial"):
            callback(study, trial)

    return call


def _recover(study: optuna.Study, error: Exception, attempt: int, current: Optional[int]) -> None:
    """The database went away (restart, network): finished trials are committed; a trial that was running is failed
    by the heartbeat and retried. Reconnect (pool_pre_ping) a few times, then give up clearly."""
    if attempt > STORAGE_RETRIES:
        raise SearcherError(f"lost the connection to the study storage ({first_line(error)}); finished trials "
                            f"are saved: run the same command to continue") from error
    wait = 2.0 ** (attempt - 1)
    log.warning("storage: %s; reconnecting in %.0fs (%d of %d)", first_line(error), wait, attempt, STORAGE_RETRIES)
    time.sleep(wait)
    if current is not None:
        try:  # the trial that lost its connection was failed: run its parameters again
            _requeue(study, current)
        except Exception as again:  # noqa: BLE001 - still no database: the next round retries
            log.warning("storage: could not queue trial %d again (%s)", current, first_line(again))


def _consecutive_failures(last: FrozenTrial, failures: int) -> int:
    surplus = str(last.user_attrs.get(records.FAIL_REASON, "")).startswith("SurplusTrial")
    if last.state != TrialState.FAIL or surplus:
        return 0
    failures += 1
    if failures >= MAX_CONSECUTIVE_FAILURES:
        raise SearcherError(f"{failures} trials failed in a row (last: trial {last.number}: "
                            f"{last.user_attrs.get(records.FAIL_REASON)}); fix the cause and run again")
    return failures


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
    return internals.has_heartbeat(internals.storage_of(study))


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
        marks = {k: trial.user_attrs[k] for k in (records.ENQUEUED_FROM, records.SOURCE_PUBLISHED)
                 if k in trial.user_attrs}  # an imported recipe stays imported when it is resumed
        study.enqueue_trial(trial.params, user_attrs={"resumes_trial": number, **marks})


def _retention(config: StudyConfig) -> Callable[[optuna.Study, FrozenTrial], None]:
    def retain(study: optuna.Study, trial: FrozenTrial) -> None:
        checkpoints.retain(study, config.models_dir, config.study.keep_best)

    return retain
