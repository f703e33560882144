"""The tracker seam: what an experiment tracker (MLflow, TensorBoard, Trackio, W&B) is told about a study.

A `Tracker` gets plain data only (no Optuna objects, no torch): one study, then per trial a start (parameters, the
student's shape, what the trial is: sampled, queued, a retry, a warm-start copy), one call per epoch (metrics and
loss terms at step = epoch, the step Optuna's pruner compares trials at), and an end (state, reason, final and
deployed figures, files). searcher.trackers.report builds that data from the study and keeps a broken tracker from
touching a trial; an implementation here may therefore raise whatever its client raises.

An implementation must not read secrets from the study file (its settings come from [report.NAME] or its own
environment variables) and must send nothing unredacted: `clean()` is the one way values leave searcher.
"""

from __future__ import annotations

import abc
import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional

from searcher import redact


@dataclass(frozen=True)
class StudyInfo:
    name: str
    uid: str  # the study's searcher:uid: what a resumed study finds its runs by
    storage: str  # redacted
    objectives: tuple[str, ...]
    directions: tuple[str, ...]
    output_dir: Path
    params: dict[str, Any]  # the study's settings worth comparing studies by (sampler, pruner, teacher, data)


@dataclass(frozen=True)
class TrialStart:
    number: int
    run_name: str  # "<study>-trial-<number>"
    params: dict[str, Any]  # hyperparameters and the student's shape ("student.layers"), flat
    tags: dict[str, str]  # what the trial is: sampled_by, retry_of, resumes_trial, warm_start_source, ...


@dataclass(frozen=True)
class TrialEnd:
    number: int
    state: str  # COMPLETE, PRUNED or FAIL (Optuna's names)
    reason: str  # why it was pruned or failed ("" when complete)
    metrics: dict[str, float]  # final figures: objective values, test split, each deployed form, size, latency
    files: dict[str, str] = field(default_factory=dict)  # name -> text: epochs.csv, README.md (the card)
    note: str = ""  # said of a run filled in from the study's records after the fact (the tracker was away)


@dataclass(frozen=True)
class Known:
    """What a tracker already holds of one trial (for a resumed study: continue, do not duplicate)."""

    finished: bool
    last_step: int = 0  # the last epoch it has


_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /:]")


def metric_name(name: str) -> str:
    """A metric name every tracker takes: MLflow allows letters, digits, _ - . space / and : only."""
    return _UNSAFE.sub("_", name)


def clean(value: Any) -> Any:
    """Redacted plain data (URLs' passwords and registered tokens become ***) for anything sent to a tracker."""
    return redact.deep(value)


@dataclass(frozen=True)
class Settings:
    """A tracker's [report.NAME] options (none by default). A field's metadata "env" names the environment variable
    that stands in for it when the table leaves it out (the tracker's own, e.g. MLFLOW_TRACKING_URI)."""


class Tracker(abc.ABC):
    """One experiment tracker. Subclasses set `name` (as in [report] to), `module` (what must be importable),
    `extra` (the pip extra that installs it), `Settings` (a frozen dataclass: its [report.NAME] table, checked when
    the study file is read) and `secrets` (the environment variables that hold its credentials: the only place for
    them, redacted wherever searcher prints or stores), and are built with the study's config."""

    name: ClassVar[str]
    module: ClassVar[str]
    extra: ClassVar[str]
    Settings: ClassVar[type] = Settings
    secrets: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config) -> None:
        self.config = config
        self.settings = getattr(config.report, self.name, None) or self.Settings()
        for var in self.secrets:
            redact.secret(os.environ.get(var))

    def setting(self, key: str, default: Any = None) -> Any:
        """[report.NAME] key, else its environment variable, else `default`."""
        value = getattr(self.settings, key)
        if value is None:
            env = {f.name: f for f in dataclasses.fields(self.Settings)}[key].metadata.get("env")
            value = os.environ.get(env) if env else None
        return value if value is not None else default

    @classmethod
    def environment(cls, key: str) -> tuple[str, ...]:
        """Where a value of [report.NAME] key belongs instead of the study file: its variable and the secrets'."""
        env = {f.name: f for f in dataclasses.fields(cls.Settings)}[key].metadata.get("env")
        return ((env,) if env else ()) + tuple(v for v in cls.secrets if v != env)

    @abc.abstractmethod
    def start_study(self, study: StudyInfo) -> Optional[dict[int, Known]]:
        """Open (or find again) the study's place in the tracker; return the trials it already holds, or None
        when the tracker cannot tell (searcher.trackers.report then keeps a ledger for it)."""

    @abc.abstractmethod
    def start_trial(self, trial: TrialStart) -> None:
        """Open the trial's run (or reopen the one a resumed study left unfinished)."""

    @abc.abstractmethod
    def log_epoch(self, number: int, step: int, metrics: dict[str, float]) -> None:
        """One epoch's metrics and loss terms, at step = epoch."""

    @abc.abstractmethod
    def end_trial(self, end: TrialEnd) -> None:
        """Final figures, state and reason, files; close the run."""

    def abandon(self, number: int, reason: str) -> None:
        """Best effort after a failed write: mark the trial's run incomplete and close it. May raise."""

    def close(self) -> None:
        """The study (in this process) is over."""
