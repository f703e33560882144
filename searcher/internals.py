"""The private Optuna names searcher still uses, each behind one function here, with the reason no public API serves.

Everything else goes through public APIs (`study.get_trials`, `study.tell`, `optuna.artifacts`, the storage's
public BaseStorage methods). When an Optuna release breaks one of these, this file is the one to fix.

| private name | used for | why there is no public way |
|---|---|---|
| `Study._storage` | heartbeats, claim locks, artifacts, telling an asked trial | Study exposes no accessor for its storage |
| `FrozenTrial._trial_id` | a trial's storage id (records, `optuna.Trial(study, id)` for ask/tell) | FrozenTrial has a number but no public id |
| `_CachedStorage._backend` | the RDBStorage (SQLAlchemy engine) under Optuna's cache, for the claim lock | the wrapper is private |
| `JournalFileBackend._file_path` | the journal file, to lock beside it | the backend keeps its path private |
| `optuna.storages._rdb` (`models`, `_create_scoped_session`) | the `fail_reason` of a trial the heartbeat failed | Optuna fails a stale trial before its callback runs, and a finished trial refuses user attrs |
| `optuna.storages._heartbeat.get_heartbeat_thread`, `Trial._trial_id` | the heartbeat of trials asked together (cohorts) | Optuna beats only inside `study.optimize`, which runs one trial at a time |
| `dashboard:artifacts:<trial id>:<artifact id>` study system attrs | a finished trial's current card in optuna-dashboard | optuna's `upload_artifact` writes trial system attrs, which a finished trial refuses; optuna-dashboard reads this (its backward-compatible) layout for trial artifacts |
"""

from __future__ import annotations

from typing import Optional

import optuna
from optuna.trial import FrozenTrial

DASHBOARD_ARTIFACTS = "dashboard:artifacts:"


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    return study._storage


def study_id(study: optuna.Study) -> int:
    return storage_of(study).get_study_id_from_name(study.study_name)  # public BaseStorage method


def trial_id(trial: FrozenTrial) -> int:
    return trial._trial_id


def rdb_storage(storage: optuna.storages.BaseStorage) -> Optional[optuna.storages.RDBStorage]:
    """The RDBStorage behind Optuna's cache wrapper, or None for other storages."""
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, optuna.storages.RDBStorage) else None


def journal_file(storage: optuna.storages.BaseStorage) -> Optional[str]:
    """The file of a journal file storage, or None."""
    return getattr(getattr(storage, "_backend", None), "_file_path", None)


def heartbeat(study: optuna.Study, trial: optuna.Trial):
    """The heartbeat thread study.optimize gives a trial (a no-op context without a heartbeat), for an asked one."""
    from optuna.storages._heartbeat import get_heartbeat_thread

    return get_heartbeat_thread(trial._trial_id, storage_of(study))


def has_heartbeat(storage: optuna.storages.BaseStorage) -> bool:
    """Whether the storage fails the trials of dead workers (RDB storages with a heartbeat interval)."""
    interval = getattr(storage, "get_heartbeat_interval", None)  # public on RDBStorage and its cache
    return bool(interval and interval())


def set_failed_trial_user_attr(storage: optuna.storages.BaseStorage, trial: FrozenTrial, key: str, value) -> bool:
    """Set a user attr on a trial that is already FAIL (RDB storages only; False elsewhere). The caller must be the
    only writer: the process whose heartbeat check failed the trial. This process's cached copy is updated too."""
    import json

    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    rdb = rdb_storage(storage)
    if rdb is None:
        return False
    tid = trial_id(trial)
    with _create_scoped_session(rdb.scoped_session, True) as session:
        row = session.query(models.TrialUserAttributeModel).filter_by(trial_id=tid, key=key).one_or_none()
        if row is None:
            session.add(models.TrialUserAttributeModel(trial_id=tid, key=key, value_json=json.dumps(value)))
        else:
            row.value_json = json.dumps(value)
    cached = storage.get_trial(tid) if storage is not rdb else None  # the cache keeps finished trials for good
    if cached is not None:
        cached.user_attrs[key] = value
    return True
