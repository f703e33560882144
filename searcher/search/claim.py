"""A study-wide lock that a worker holds from counting the study's trials until its next trial exists.

Without it, two workers that both count n_trials - 1 finished or running trials both start one, and the study gets
one trial too many (it is then failed unrun as a SurplusTrial by the objective, which stays as the backstop). With
it, "count, then create" is one step across workers, so N workers create exactly n_trials:

- PostgreSQL: a session advisory lock (pg_advisory_lock) keyed by the study name, taken on its own connection; the
  server releases it if the worker dies.
- SQLite and Optuna's journal file: a file lock beside the database or journal file (processes on one machine).
- Other storages (Redis journal, MySQL): no lock; the backstop applies.

A worker waits at most WAIT_S for the lock (a holder that hangs, or a machine that vanished without closing its
connection, must not stall the study); then it warns and goes on without it, and the backstop applies.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import optuna

from searcher import files, internals

log = logging.getLogger(__name__)

WAIT_S = 300.0


class Claim:
    """acquire() before counting the study's trials; release() once the next trial is created (idempotent)."""

    wait_s = WAIT_S

    def acquire(self) -> None:
        pass

    def _gave_up(self) -> None:
        log.warning("claim: another worker has held the study's claim lock for over %.0fs; going on without it (a "
                    "trial over n_trials, if any, is closed unrun as SurplusTrial)", self.wait_s)

    def release(self) -> None:
        pass


class _FileClaim(Claim):
    def __init__(self, path: Path):
        self._lock = files.lock(Path(str(path) + ".claim"))

    def acquire(self) -> None:
        from filelock import Timeout

        try:
            self._lock.acquire(timeout=self.wait_s)
        except Timeout:
            self._gave_up()

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release(force=True)


class _PostgresClaim(Claim):
    def __init__(self, engine, study_name: str):
        self._engine = engine
        # pg advisory locks take a signed 64-bit key
        self._key = int.from_bytes(hashlib.sha256(f"searcher:{study_name}".encode()).digest()[:8], "big",
                                   signed=True)
        self._connection = None

    def acquire(self) -> None:
        import sqlalchemy

        connection = self._engine.connect()
        deadline = time.monotonic() + self.wait_s
        try:
            while not connection.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:key)"),
                                         {"key": self._key}).scalar():
                connection.commit()
                if time.monotonic() >= deadline:
                    connection.close()
                    self._gave_up()
                    return
                time.sleep(0.05)
            connection.commit()
        except Exception:
            connection.close()
            raise
        self._connection = connection

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        import sqlalchemy

        try:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
            connection.commit()
        except Exception as e:  # noqa: BLE001 - a dropped connection released the lock on the server already
            log.debug("claim: unlock failed (%s); the server releases the lock with the connection", e)
        finally:
            connection.close()


def for_study(study: optuna.Study) -> Claim:
    """The claim lock that fits the study's storage."""
    storage = internals.storage_of(study)
    rdb = internals.rdb_storage(storage)
    if rdb is not None:
        engine = rdb.engine
        if engine.dialect.name == "postgresql":
            return _PostgresClaim(engine, study.study_name)
        if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            return _FileClaim(Path(engine.url.database))
        return Claim()
    path = internals.journal_file(storage)
    return _FileClaim(Path(path)) if path else Claim()
