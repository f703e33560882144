"""Reporting a study to its trackers ([report] to): what the trackers are told, from the study's own records.

The objective already hands every finished epoch to a callback (`on_epoch`, the progress display's too) and the
engine calls hooks after each trial (`after_trial`): `Reporter.epoch` and `Reporter.trial_done` sit there, so the
distill loop and the objective know nothing of trackers. A run is opened at a trial's first epoch, from the records
the objective has written by then (hyperparameters, student); a trial that fails before it, or one run by
`searcher run-trial` (no epoch callback), gets its run at the end with its epochs read back from the study.

A tracker is a view, never a dependency: any error from one is one warning with its reason, its current run is
marked incomplete where it still answers, and it is left alone for the rest of this process; the study goes on.
When the study is opened again, each tracker is asked what it holds (or, where it cannot tell, a ledger in
<output_dir>/report/ says), and what it missed is filled in from the study's records: runs are continued, never
duplicated.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from pathlib import Path
from typing import Optional

import optuna
from optuna.trial import FrozenTrial, TrialState

from searcher import files, records
from searcher.records import storage as st
from searcher.errors import first_line
from searcher.trackers._base import Known, StudyInfo, Tracker, TrialEnd, TrialStart, clean, metric_name

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def _reportable(frozen: FrozenTrial) -> bool:
    """Finished, and trained or tried: a surplus trial (closed unrun: another worker took the budget) is no run."""
    return frozen.state in FINISHED and not str(frozen.user_attrs.get(records.FAIL_REASON, "")).startswith(
        "SurplusTrial")


def run_name(study_name: str, number: int) -> str:
    return f"{study_name}-trial-{number:04d}"


# --- what the trackers are told, from the study's records ---


def study_info(study: optuna.Study, config, url: Optional[str] = None) -> StudyInfo:
    attrs = study.user_attrs
    teacher, data = attrs.get(st.ATTR_TEACHER) or {}, attrs.get(st.ATTR_DATASET) or {}
    params = {"study": config.study.name, "objectives": ",".join(config.study.objectives),
              "directions": ",".join(config.study.directions), "n_trials": config.study.n_trials,
              "sampler": attrs.get(st.ATTR_SAMPLER), "pruner": attrs.get(st.ATTR_PRUNER),
              "teacher": (teacher.get("model") or teacher.get("base")) if isinstance(teacher, dict) else teacher,
              "dataset": (data.get("dataset") or json.dumps(data.get("files"))) if isinstance(data, dict) else data}
    return StudyInfo(name=config.study.name, uid=str(attrs.get(st.ATTR_UID, "")),
                     storage=st.redact(url or config.storage_url()), objectives=tuple(config.study.objectives),
                     directions=tuple(config.study.directions), output_dir=config.output_dir,
                     params=clean({k: v for k, v in params.items() if v is not None}))


def _flat(prefix: str, value, out: dict) -> None:
    """Nested records as flat params: {"student": {"layers": 4}} -> {"student.layers": 4}; lists as text."""
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, (list, tuple)):
        out[prefix] = json.dumps(value)
    else:
        out[prefix] = value


def trial_start(frozen: FrozenTrial, study_name: str) -> TrialStart:
    """Parameters (every hyperparameter the trial ran with, the student's shape) and what the trial is."""
    user, system = frozen.user_attrs, frozen.system_attrs
    params: dict = {}
    _flat("", user.get(records.HYPERPARAMS) or frozen.params, params)
    _flat("student", user.get(records.STUDENT) or {}, params)
    batch = user.get(records.BATCH) or {}
    for key in ("micro_batch_size", "accumulation_steps"):
        if key in batch:
            params[f"batch.{key}"] = batch[key]
    tags = {"trial": str(frozen.number)}
    for key, tag in ((records.SAMPLED_BY, "sampled_by"), ("resumes_trial", "resumes_trial"),
                     (records.ENQUEUED_FROM, "enqueued_from"), (records.WARM_START_SOURCE, "warm_start_source"),
                     (records.WARM_START_TRIAL, "warm_start_trial")):
        if key in user:
            tags[tag] = str(user[key])
    if "failed_trial" in system:
        tags["retry_of"] = str(system["failed_trial"])  # the heartbeat re-ran a dead worker's trial
    kind = ("warm-start copy" if records.WARM_START_SOURCE in user else
            "retry" if "failed_trial" in system else "resumed" if "resumes_trial" in user else
            "queued" if "fixed_params" in system else "sampled")
    tags["kind"] = kind
    return TrialStart(number=frozen.number, run_name=run_name(study_name, frozen.number),
                      params=clean({k: v for k, v in params.items() if v is not None}), tags=clean(tags))


def epoch_metrics(row: dict) -> tuple[int, dict[str, float]]:
    """(step, metrics) of one row of the per-epoch table: step = epoch; loss terms as train_loss/NAME."""
    step = int(row["epoch"])
    out = {}
    for key, value in row.items():
        if key == "epoch" or not _number(value):
            continue
        name = {"step": "optimizer_step", "seconds": "epoch_seconds"}.get(key, key)
        if name.startswith(records.TERM):
            name = "train_loss/" + name[len(records.TERM):]
        out[metric_name(name)] = float(value)
    return step, out


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def trial_end(frozen: FrozenTrial, study: optuna.Study, config, note: str = "") -> TrialEnd:
    user = frozen.user_attrs
    metrics: dict[str, float] = {}
    for name, value in zip(config.study.objectives, frozen.values or []):
        metrics[f"objective/{name}"] = value
    for key, value in (user.get(records.TEST_METRICS) or {}).items():
        metrics[f"test/{key}"] = value
    for form, measured in (user.get(records.FORMATS) or {}).items():
        if isinstance(measured, dict):
            for key, value in measured.items():
                metrics[f"{form}/{key}"] = value
    for key, value in (user.get(records.LATENCY) or {}).items():
        metrics[f"latency_ms/{key}"] = value
    for key in (records.SIZE, records.WALL_TIME, records.PEAK_MEMORY):
        metrics[key] = user.get(key)
    student = user.get(records.STUDENT) or {}
    if student.get("params"):
        metrics["params_millions"] = student["params"] / 1e6
    reason = user.get(records.PRUNE_REASON) if frozen.state == TrialState.PRUNED else \
        user.get(records.FAIL_REASON) if frozen.state == TrialState.FAIL else ""
    files_ = {}
    history = user.get(records.HISTORY)
    if history:
        from searcher.records.artifacts import epochs_csv

        files_["epochs.csv"] = epochs_csv(history)
    card = _card(study, config, frozen)
    if card:
        files_["README.md"] = card
    return TrialEnd(number=frozen.number, state=frozen.state.name, reason=clean(str(reason or "")),
                    metrics={metric_name(k): float(v) for k, v in metrics.items() if _number(v)},
                    files=clean(files_), note=note)


def _card(study: optuna.Study, config, frozen: FrozenTrial) -> Optional[str]:
    """The card the dashboard hook attached to a kept trial (rendered once, there), if any."""
    if frozen.state != TrialState.COMPLETE or records.is_warm_start(frozen):
        return None
    from searcher.card.attached import card_artifact

    try:
        return card_artifact(study, config, frozen.number)
    except Exception as e:  # noqa: BLE001 - no card is no reason to lose the run
        log.debug("report: no card for trial %d (%s)", frozen.number, first_line(e))
        return None


# --- the ledger: what was sent to a tracker that cannot say what it holds ---


class Ledger:
    def __init__(self, path: Path, uid: str):
        self.path, self.uid = path, uid

    def read(self) -> dict[int, Known]:
        data = files.read_json(self.path) or {}
        if data.get("uid") != self.uid:
            return {}
        return {int(k): Known(**v) for k, v in data.get("trials", {}).items()}

    def note(self, number: int, known: Known) -> None:
        from filelock import FileLock

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock"):
            trials = {str(k): vars(v) for k, v in self.read().items()}
            trials[str(number)] = {"finished": known.finished, "last_step": known.last_step}
            files.write_text(self.path, json.dumps({"uid": self.uid, "trials": trials}, indent=1))


# --- the reporter ---


def _timed(method):
    """Adds the time a Reporter entry point takes to `seconds`: what reporting costs the study (benchmarks read the
    closing log line)."""
    @functools.wraps(method)
    def timed(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started

    return timed


class Reporter:
    """Sends a study to its trackers; nothing a tracker does reaches the trial."""

    def __init__(self, config, trackers: list[Tracker]):
        self.config = config
        self.trackers = list(trackers)
        self.down: dict[str, str] = {}  # tracker name -> why it was left alone
        self.open: dict[str, dict[int, int]] = {}  # tracker name -> {trial number: last step sent}
        self.ledgers: dict[str, Ledger] = {}
        self.study: Optional[optuna.Study] = None
        self.seconds = 0.0  # spent in reporting, all trackers together
        self.spent: dict[str, float] = {t.name: 0.0 for t in self.trackers}  # in each tracker's own calls
        self.trials = 0

    def _live(self) -> list[Tracker]:
        return [t for t in self.trackers if t.name not in self.down]

    def _safely(self, tracker: Tracker, doing: str, fn, *args, number: Optional[int] = None):
        if tracker.name in self.down:
            return None
        started = time.perf_counter()
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001 - a tracker must never fail a trial
            reason = clean(f"{type(e).__name__}: {first_line(e)}")[:300]
            self.down[tracker.name] = reason
            log.warning("report: %s stopped answering while %s (%s); the study goes on without it, and the next "
                        "`searcher optimize` fills in what it missed from the study's records", tracker.name,
                        doing, reason)
            if number is not None:
                try:
                    tracker.abandon(number, reason)
                except Exception:  # noqa: BLE001 - it is down: the run stays as the tracker left it
                    pass
            return None
        finally:
            self.spent[tracker.name] += time.perf_counter() - started

    def _note(self, tracker: Tracker, number: int, known: Known) -> None:
        ledger = self.ledgers.get(tracker.name)
        if ledger is not None:
            try:
                ledger.note(number, known)
            except OSError as e:
                log.debug("report: ledger %s not written (%s)", ledger.path, e)

    @_timed
    def start(self, study: optuna.Study, url: Optional[str] = None) -> None:
        """Open the study in every tracker, and fill in the finished trials a tracker does not have yet."""
        self.study = study
        info = study_info(study, self.config, url)
        for tracker in self._live():
            self.open[tracker.name] = {}
            known = self._safely(tracker, "opening the study", tracker.start_study, info)
            if tracker.name in self.down:
                continue
            if known is None:
                ledger = Ledger(self.config.output_dir / "report" / f"{tracker.name}.json", info.uid)
                self.ledgers[tracker.name] = ledger
                known = ledger.read()
            self._fill_in(tracker, study, known)

    def _fill_in(self, tracker: Tracker, study: optuna.Study, known: dict[int, Known]) -> None:
        filled = 0
        for frozen in study.get_trials(deepcopy=False, states=FINISHED):
            if not _reportable(frozen):
                continue
            have = known.get(frozen.number)
            if have is not None and have.finished:
                continue
            note = ("filled in from the study's records: the tracker was away during the trial" if have is not None
                    else "reported from the study's records after the trial (the tracker was away or added later)")
            if records.is_warm_start(frozen):
                note = f"a warm-start copy of trial {frozen.user_attrs.get(records.WARM_START_TRIAL)} of " \
                       f"{clean(str(frozen.user_attrs.get(records.WARM_START_SOURCE)))}"
            self._report_whole(tracker, study, frozen, have.last_step if have is not None else 0, note)
            if tracker.name in self.down:
                return
            filled += 1
        if filled:
            log.info("report: %s: %d finished trial(s) filled in from the study's records", tracker.name, filled)

    def _report_whole(self, tracker: Tracker, study: optuna.Study, frozen: FrozenTrial, after_step: int,
                      note: str) -> None:
        n = frozen.number
        self._safely(tracker, f"starting trial {n}", tracker.start_trial, trial_start(frozen, self.config.study.name),
                     number=n)
        for row in records.history_rows(frozen.user_attrs.get(records.HISTORY)):
            step, metrics = epoch_metrics(row)
            if step > after_step:
                self._safely(tracker, f"logging trial {n}", tracker.log_epoch, n, step, metrics, number=n)
        self._safely(tracker, f"ending trial {n}", tracker.end_trial, trial_end(frozen, study, self.config, note),
                     number=n)
        if tracker.name not in self.down:
            self._note(tracker, n, Known(finished=True))

    # the objective's on_epoch
    @_timed
    def epoch(self, trial: optuna.Trial, result) -> None:
        step, metrics = epoch_metrics(records.history_rows(records.history_columns([result]))[0])
        if result.peak_memory_mb is not None:
            metrics["peak_memory_mb"] = float(result.peak_memory_mb)
        frozen = None
        for tracker in self._live():
            sent = self.open.setdefault(tracker.name, {})
            if trial.number not in sent:
                if frozen is None:
                    frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
                self._safely(tracker, f"starting trial {trial.number}", tracker.start_trial,
                             trial_start(frozen, self.config.study.name), number=trial.number)
                sent[trial.number] = 0
            self._safely(tracker, f"logging trial {trial.number}", tracker.log_epoch, trial.number, step, metrics,
                         number=trial.number)
            if tracker.name not in self.down:
                sent[trial.number] = step
                self._note(tracker, trial.number, Known(finished=False, last_step=step))

    # an after_trial hook (after the dashboard's, which attaches the card)
    @_timed
    def trial_done(self, study: optuna.Study, frozen: FrozenTrial) -> None:
        if not _reportable(frozen):
            return
        self.trials += 1
        for tracker in self._live():
            sent = self.open.setdefault(tracker.name, {})
            if frozen.number in sent:
                self._safely(tracker, f"ending trial {frozen.number}", tracker.end_trial,
                             trial_end(frozen, study, self.config), number=frozen.number)
                if tracker.name not in self.down:
                    self._note(tracker, frozen.number, Known(finished=True))
            else:  # failed before its first epoch, or run by run-trial: the whole run from the records
                self._report_whole(tracker, study, frozen, 0, "")
            sent.pop(frozen.number, None)

    def close(self) -> None:
        started = time.perf_counter()
        for tracker in self.trackers:
            if tracker.name not in self.down:
                self._safely(tracker, "closing", tracker.close)
        self.seconds += time.perf_counter() - started
        each = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in self.spent.items())
        log.info("report: %.2fs in reporting (%s) for %d trial(s)", self.seconds, each, self.trials)
