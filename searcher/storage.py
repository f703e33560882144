"""Study storage: open the Optuna storage a study file names, create or load the study, and its study-level records.

Any Optuna storage works: an RDB URL (SQLite by default, PostgreSQL/MySQL for many workers), `journal:PATH` or a
`*.log` path for Optuna's journal file storage, and `redis://...` for its Redis journal. RDB storages get a heartbeat,
so a worker killed with SIGKILL has its trial failed and re-queued with the same parameters (Optuna's journal storage
has no heartbeat: there a killed worker's trial stays RUNNING).
"""

from __future__ import annotations

import logging
import platform
import random
import re
import time
import warnings
from importlib import metadata
from typing import Optional

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback

from searcher.config import StudyConfig
from searcher.errors import ConfigError, StudyError, first_line

log = logging.getLogger(__name__)

ATTR_CONFIG = "searcher:config"
ATTR_STUDY_FILE = "searcher:study_file"
ATTR_TEACHER = "teacher"
ATTR_DATASET = "dataset"
ATTR_VERSIONS = "versions"
ATTR_RANGES = "searched_ranges"
VERSION_PACKAGES = ("searcher", "transformers", "torch", "datasets", "tokenizers", "optuna", "huggingface-hub",
                    "evaluate")


def open_storage(url: str, config: Optional[StudyConfig] = None) -> optuna.storages.BaseStorage:
    """An Optuna storage for `url`, with heartbeat and retry of stale trials where the storage supports it."""
    with warnings.catch_warnings():
        # heartbeat and its retry callback are marked experimental but are Optuna's documented way to survive
        # killed workers; the warning would print on every command
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _open_storage(url, config)


def _open_storage(url: str, config: Optional[StudyConfig]) -> optuna.storages.BaseStorage:
    study = config.study if config is not None else None
    heartbeat = dict(
        heartbeat_interval=study.heartbeat_interval if study else 60,
        grace_period=study.grace_period if study else 120,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=study.max_retry if study else 3),
    )
    try:
        if url.startswith("redis://") or url.startswith("rediss://"):
            from optuna.storages.journal import JournalRedisBackend

            return optuna.storages.JournalStorage(JournalRedisBackend(url))
        if url.startswith("journal:") or url.endswith(".log"):
            from optuna.storages.journal import JournalFileBackend

            path = url[len("journal:"):] if url.startswith("journal:") else url
            return optuna.storages.JournalStorage(JournalFileBackend(path))
        if "://" not in url:
            raise ConfigError(f"storage {url!r} is not a storage URL; use sqlite:////abs/path.db, "
                              f"postgresql+psycopg2://user@host/db, journal:/path/file.log or redis://host:6379")
        engine_kwargs = {"pool_pre_ping": True}  # a dropped connection (database restart) is re-opened, not fatal
        if url.startswith("sqlite"):
            # several processes on one SQLite file wait for each other's write lock instead of failing at once
            engine_kwargs = {"connect_args": {"timeout": 120}}
        return _rdb_storage(url, engine_kwargs, heartbeat)
    except ConfigError:
        raise
    except ImportError as e:
        raise ConfigError(f"storage {redact(url)} needs a driver that is not installed ({first_line(e)}); "
                          f"pip install psycopg2-binary (PostgreSQL), pymysql (MySQL) or redis") from e
    except Exception as e:
        raise StudyError(f"cannot open storage {redact(url)}: {first_line(e)}; check that the database is running "
                         f"and the URL is right") from e


def _rdb_storage(url: str, engine_kwargs: dict, heartbeat: dict, attempts: int = 5) -> optuna.storages.RDBStorage:
    """RDBStorage, retried when workers starting at the same instant race to create the schema of a new database
    (PostgreSQL answers the loser with a unique violation on its catalog)."""
    import sqlalchemy.exc

    for attempt in range(attempts - 1):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            time.sleep(0.5 + random.random() * (attempt + 1))
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)


PASSWORD_IN_URL = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/\s@\"']+:)([^@\s\"']+)(@)", re.IGNORECASE)


def redact_text(text: str) -> str:
    """Any URL password in a text (a study file) replaced by ***: it must never reach the study, a card or the Hub."""
    return PASSWORD_IN_URL.sub(r"\1***\3", text)


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """Optuna's sampler, seeded afresh for each trial from (study seed, trial number).

    One sampler seeded once per process would make every worker draw the same random start-up trials; seeding per
    trial keeps a one-worker study reproducible and gives N workers N different trials. It only delegates through
    the public BaseSampler interface, and holds no state between trials (TPE reads the history from storage).
    """

    def __init__(self, factory, seed: int):
        self._factory = factory
        self._seed = seed
        self._inner = factory(seed)

    def before_trial(self, study, trial) -> None:
        self._inner = self._factory((self._seed * 1_000_003 + trial.number) % 2 ** 31)
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()


def _tpe(seed: int) -> optuna.samplers.BaseSampler:
    # multivariate TPE models the joint space (batch size and learning rate interact); group=True because hidden is
    # only searched for students that are not teacher-initialised (a conditional space); constant_liar keeps
    # parallel workers from sampling next to each other's running trials
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True)


def sampler(config: StudyConfig) -> optuna.samplers.BaseSampler:
    if config.study.sampler == "random":
        return TrialSeededSampler(lambda seed: optuna.samplers.RandomSampler(seed=seed), config.study.seed)
    return TrialSeededSampler(_tpe, config.study.seed)


def max_epochs(config: StudyConfig) -> int:
    from searcher.config import dimension_values

    return int(dimension_values(config.search.epochs)[1])


def pruner(config: StudyConfig) -> optuna.pruners.BasePruner:
    p = config.study.pruner
    if p.type == "none":
        return optuna.pruners.NopPruner()
    if p.type == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(max_epochs(config), 1),
                                             reduction_factor=p.reduction_factor)
    return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps,
                                      interval_steps=1)


def create_or_load(config: StudyConfig, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """The study, resumed if it exists (load_if_exists), with the study file's sampler, pruner and metric names."""
    try:
        study = optuna.create_study(storage=storage, study_name=config.study.name,
                                    directions=list(config.study.directions), sampler=sampler(config),
                                    pruner=pruner(config), load_if_exists=True)
    except ValueError as e:
        raise ConfigError(f"study {config.study.name!r} exists in this storage with other directions "
                          f"({first_line(e)}); use a new [study] name or the original directions") from e
    if study.metric_names is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(config.study.objectives))
    return study


def load(config: StudyConfig, storage_url: Optional[str] = None) -> optuna.Study:
    """An existing study (for best/card/push/dashboard): never creates one."""
    url = config.storage_url(storage_url)
    storage = open_storage(url, config)
    try:
        return optuna.load_study(study_name=config.study.name, storage=storage, sampler=sampler(config),
                                 pruner=pruner(config))
    except KeyError as e:
        raise StudyError(f"no study named {config.study.name!r} in {redact(url)}; run "
                         f"`searcher optimize {config.path}` first (or pass --storage)") from e


def versions() -> dict[str, str]:
    out = {}
    for name in VERSION_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    out["python"] = platform.python_version()
    return out


def record_study(study: optuna.Study, attrs: dict) -> None:
    """Write study-level records, skipping values that are already stored unchanged (cheap on resume)."""
    current = study.user_attrs
    for key, value in attrs.items():
        if current.get(key) != value:
            study.set_user_attr(key, value)
