"""The claim lock makes "count the study's trials, then create one" a single step across workers.

Four threads, each with its own storage connection like a worker process, race to fill a budget of trials with a
pause between counting and creating that makes the race certain; with the claim lock the study gets exactly the
budget, with the no-op claim (Redis journal, MySQL) it overshoots, which shows the test can fail.
"""

import logging
import threading
import time

import optuna
import pytest

from searcher.search import claim as claims

BUDGET = 12
THREADS = 4


def fill(url: str, make_claim) -> int:
    optuna.create_study(study_name="race", storage=url, load_if_exists=True)
    barrier = threading.Barrier(THREADS)
    errors = []

    def worker():
        try:
            study = optuna.load_study(study_name="race", storage=url)
            lock = make_claim(study)
            barrier.wait()
            while True:
                lock.acquire()
                try:
                    if len(study.get_trials(deepcopy=False)) >= BUDGET:
                        return
                    time.sleep(0.02)  # counting and creating are apart: without the lock, others slip in here
                    study.ask()
                finally:
                    lock.release()
                    lock.release()  # release is idempotent
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    return len(optuna.load_study(study_name="race", storage=url).trials)


@pytest.mark.postgres
def test_postgres_advisory_claim_creates_exactly_the_budget(pg_url):
    study = optuna.create_study(study_name="race", storage=pg_url)
    assert type(claims.for_study(study)).__name__ == "_PostgresClaim"
    assert fill(pg_url, claims.for_study) == BUDGET


def test_sqlite_file_claim_creates_exactly_the_budget(tmp_path):
    url = f"sqlite:///{tmp_path / 'race.db'}"
    study = optuna.create_study(study_name="race", storage=url)
    assert type(claims.for_study(study)).__name__ == "_FileClaim"
    assert fill(url, claims.for_study) == BUDGET


def test_journal_file_claim_is_a_file_lock(tmp_path):
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / "s.log")))
    study = optuna.create_study(study_name="race", storage=storage)
    assert type(claims.for_study(study)).__name__ == "_FileClaim"


@pytest.mark.postgres
def test_without_the_claim_workers_overshoot(pg_url):
    assert fill(pg_url, lambda study: claims.Claim()) > BUDGET


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_a_lock_held_too_long_is_given_up_with_a_warning(backend, tmp_path, request):
    warnings = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())
    claims.log.addHandler(handler)  # directly: the in-process CLI of other tests stops "searcher" propagating
    request.addfinalizer(lambda: claims.log.removeHandler(handler))
    url = request.getfixturevalue("pg_url") if backend == "postgres" else f"sqlite:///{tmp_path / 'race.db'}"
    study = optuna.create_study(study_name="race", storage=url)
    holder, waiter = claims.for_study(study), claims.for_study(study)
    holder.acquire()
    waiter.wait_s = 0.5
    started = time.monotonic()
    waiter.acquire()
    assert 0.4 < time.monotonic() - started < 10
    assert any("going on without it" in w for w in warnings), warnings
    waiter.release()  # it holds nothing: a no-op
    holder.release()
    waiter.wait_s = 5
    waiter.acquire()  # free again
    waiter.release()
