"""Study storage: open the Optuna storage a study file names, create or load the study, and its study-level records.

Any Optuna storage works: an RDB URL (SQLite by default, PostgreSQL/MySQL for many workers), `journal:PATH` or a
`*.log` path for Optuna's journal file storage, and `redis://...` for its Redis journal. RDB storages get a heartbeat,
so a worker killed with SIGKILL has its trial failed and re-queued with the same parameters (Optuna's journal storage
has no heartbeat: there a killed worker's trial stays RUNNING).
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import random
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import Iterator, Optional
from urllib.parse import urlsplit

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback

from searcher import internals, redact as secrets
from searcher.config import StudyConfig
from searcher.errors import ConfigError, SearcherError, StudyError, first_line
from searcher.records.trial import FAIL_REASON

log = logging.getLogger(__name__)

ATTR_CONFIG = "searcher:config"
ATTR_STUDY_FILE = "searcher:study_file"
ATTR_TEACHER = "teacher"
ATTR_DATASET = "dataset"
ATTR_VERSIONS = "versions"
ATTR_RANGES = "searched_ranges"
ATTR_SAMPLER = "searcher:sampler"
ATTR_PRUNER = "searcher:pruner"
ATTR_STOPPED = "searcher:stopped"  # why the study ended before n_trials (stop = {...}); "" once it runs on
ATTR_DEFINES = "searcher:defines"  # what defines the trials, fixed when the study is created
ATTR_STUDY_FILES = "searcher:study_files"  # every version of the study file that ran trials, by its hash
ATTR_UID = "searcher:uid"  # this study's identity on disk (checkpoint folders, output_dir ownership)
ATTR_WARM_STARTED = "searcher:warm_started"  # [study] warm_start sources already read: {source: {copied, complete}}
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
        heartbeat_stale_trial_callback=RetryAndSay(max_retry=study.max_retry if study else 3),
    )
    try:
        if _is_redis(url):
            from optuna.storages.journal import JournalRedisBackend

            return optuna.storages.JournalStorage(JournalRedisBackend(url))
        if _is_journal(url):
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(storage_file(url)))
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


class RetryAndSay(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a trial whose worker stopped heartbeating, and the failed trial's fail_reason saying so."""

    def __init__(self, max_retry: int):
        super().__init__(max_retry=max_retry)
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        super().__call__(study, trial)
        retries = [t.number for t in study.get_trials(deepcopy=False)
                   if t.system_attrs.get("retry_history", [])[-1:] == [trial.number]]
        then = (f"retried as trial {retries[-1]}" if retries else
                f"not retried: it was already retried [study] max_retry = {self.max_retry} times")
        reason = f"worker stopped heartbeating (killed or lost); {then}"
        try:
            internals.set_failed_trial_user_attr(internals.storage_of(study), trial, FAIL_REASON, reason)
        except Exception as e:  # noqa: BLE001 - the reason is a note: never let it stop the retry or the worker
            log.warning("storage: could not record why trial %d failed (%s)", trial.number, first_line(e))


def _rdb_storage(url: str, engine_kwargs: dict, heartbeat: dict, attempts: int = 5) -> optuna.storages.RDBStorage:
    """RDBStorage, safe when workers starting at the same instant create the schema of a new database. Optuna checks
    for each table, then creates the missing ones, then writes its version rows: two processes interleaving there
    fail. SQLite answers the loser with "table ... already exists" (an OperationalError, which is also how SQLite says
    a file cannot be opened, so it is not retried blindly): its workers create the schema one at a time under a file
    lock beside the database. PostgreSQL answers with a unique violation on its catalog: that is retried."""
    import sqlalchemy.exc

    with _schema_lock(url):
        for attempt in range(attempts - 1):
            try:
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
                time.sleep(0.5 + random.random() * (attempt + 1))
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)


SCHEMA_LOCK_WAIT_S = 120.0  # creating a schema takes well under a second; a holder stuck longer is not waited for


@contextlib.contextmanager
def _schema_lock(url: str) -> Iterator[None]:
    """Hold `NAME.db.schema.lock` beside a SQLite database while its storage opens, so that its schema is created
    once. No lock where there is no file to guard (in-memory SQLite, servers) or where the folder is missing or
    read-only (nobody can create the database there: `searcher best` on a read-only copy only reads)."""
    file = storage_file(url) if url.startswith("sqlite") else None
    folder = Path(file).parent if file is not None else None
    if folder is None or not folder.is_dir() or not os.access(folder, os.W_OK):
        yield
        return
    from filelock import FileLock, Timeout

    lock = FileLock(file + ".schema.lock")
    try:
        lock.acquire(timeout=SCHEMA_LOCK_WAIT_S)
    except (Timeout, OSError) as e:
        log.warning("storage: opening %s without its schema lock (%s)", file, first_line(e) or type(e).__name__)
    try:
        yield
    finally:
        if lock.is_locked:
            lock.release()


redact = redact_text = secrets.text  # URLs in messages and texts (study files) lose their passwords


def _is_redis(url: str) -> bool:
    return url.startswith(("redis://", "rediss://"))


def _is_journal(url: str) -> bool:
    return not _is_redis(url) and (url.startswith("journal:") or url.endswith(".log"))


def storage_file(url: str) -> Optional[str]:
    """The file a SQLite or journal-file storage URL names, as SQLAlchemy and Optuna open it: `sqlite:////abs/a.db`
    is absolute, `sqlite:///rel/a.db` relative to the working folder, and a query (`?timeout=5`) is no part of the
    name. None for in-memory SQLite and for server URLs (PostgreSQL, MySQL, Redis)."""
    if _is_journal(url):
        return (url[len("journal:"):] if url.startswith("journal:") else url) or None
    if not url.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)  # the parse SQLAlchemy itself opens the file with (it also decodes %20 and the like)
    except ArgumentError as e:
        raise ConfigError(f"storage {redact(url)} is not a SQLite URL SQLAlchemy can read ({first_line(e)}); use "
                          f"sqlite:////abs/path.db") from e
    database = parsed.database
    if database and database.startswith("file:") and parsed.query.get("uri") in ("true", "1"):
        database = urlsplit(database).path  # SQLite's own URI form, sqlite:///file:/abs/a.db?mode=ro&uri=true
    return None if database in (None, "", ":memory:") else database


def same_storage(a: str, b: str) -> bool:
    """Whether two storage URLs name one storage, however they are spelled: a SQLite or journal file by its real
    path (sqlite:////abs/./w.db, sqlite:///w.db from its folder and a symlinked folder are one file); a server by its
    kind, host, port and database. The user, the password, the driver (postgresql+psycopg2) and the query
    (?sslmode=, ?connect_timeout=) are left out: they change how one connects, not where the studies are."""
    return _identity(a) == _identity(b)


DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "redis": 6379, "rediss": 6379}


def _identity(url: str) -> tuple:
    file = storage_file(url)
    if file is not None:
        return "file", os.path.realpath(file)
    parts = urlsplit(url)
    kind = parts.scheme.lower().split("+", 1)[0]
    try:
        port = parts.port or DEFAULT_PORTS.get(kind)
    except ValueError:  # not a number: compare it as written
        port = parts.netloc.rpartition(":")[2]
    return kind, (parts.hostname or "").lower(), port, parts.path.rstrip("/")


def open_study(source: str) -> tuple[optuna.Study, str]:
    """A finished study as STORAGE_URL::STUDY_NAME, opened for reading (`searcher import`, [study] warm_start):
    (study, the source with its password redacted). A SQLite or journal file that does not exist is an error,
    never created empty."""
    url, _, name = source.rpartition("::")
    shown = f"{redact(url)}::{name}"
    if not url or not name:
        raise StudyError(f"{shown}: give a finished study as STORAGE_URL::STUDY_NAME, e.g. "
                         f"sqlite:////abs/path/study.db::my-study")
    try:
        file = storage_file(url)
        # opening a missing SQLite or journal file would create an empty one there (raised here to get the prefix
        # below, like the storage's own errors)
        if file is not None and not Path(file).is_file():
            raise StudyError(f"the storage file {file} does not exist; check the path (sqlite:////abs/path.db has "
                             f"four slashes)")
        opened = open_storage(url)
        return optuna.load_study(study_name=name, storage=opened), shown
    except KeyError as e:
        names = ", ".join(optuna.get_all_study_names(storage=opened)) or "none"
        raise StudyError(f"{shown}: no study named {name!r} there (studies: {names})") from e
    except SearcherError as e:
        raise StudyError(f"{shown}: {first_line(e)}") from e


def check_writable(url: str) -> None:
    """A SQLite study that will be written must be writable, file and folder (SQLite writes a journal beside it);
    otherwise every write fails deep inside SQLAlchemy."""
    file = storage_file(url) if url.startswith("sqlite:") else None
    if file is None:
        return
    path = Path(file)
    for target in (path, path.parent):
        if target.exists() and not os.access(target, os.W_OK):
            raise ConfigError(f"the study database {path} is read-only ({'file' if target == path else 'its folder'}"
                              f"); searcher writes every trial there: make it writable, or copy it and pass "
                              f"--storage sqlite:///path/to/copy.db")


def study_file(config: StudyConfig) -> tuple[str, str]:
    """(hash, text) of the study file as it runs, passwords redacted: trials record the hash of theirs."""
    import hashlib

    text = redact_text(config.path.read_text(encoding="utf-8"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12], text


def create_or_load(config: StudyConfig, storage: optuna.storages.BaseStorage,
                   sampler: optuna.samplers.BaseSampler, pruner: optuna.pruners.BasePruner) -> optuna.Study:
    """The study, resumed if it exists (load_if_exists), with its metric names. The sampler and pruner are built by
    the caller (searcher.search.strategy): how a study searches is no decision of its storage."""
    try:
        study = optuna.create_study(storage=storage, study_name=config.study.name,
                                    directions=list(config.study.directions), sampler=sampler, pruner=pruner,
                                    load_if_exists=True)
    except ValueError as e:
        raise ConfigError(f"study {config.study.name!r} exists in this storage with other directions "
                          f"({first_line(e)}); use a new [study] name or the original directions") from e
    if study.metric_names is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(config.study.objectives))
    return study


def load(config: StudyConfig, storage_url: Optional[str] = None) -> optuna.Study:
    """An existing study, to read (best/card/push/dashboard): never creates one. It samples nothing, so it gets
    Optuna's default sampler and pruner; `searcher optimize` builds the study file's (searcher.run.optimize)."""
    url = config.storage_url(storage_url)
    storage = open_storage(url, config)
    try:
        return optuna.load_study(study_name=config.study.name, storage=storage)
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
