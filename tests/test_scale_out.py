"""Many workers on one study through PostgreSQL (a real server on 127.0.0.1), with faults; SQLite with two workers.

The PostgreSQL tests use conftest's pg_url: a database of their own on SEARCHER_TEST_POSTGRES (default
postgresql+psycopg2://postgres@127.0.0.1:5432), dropped afterwards. Where no server answers, they skip and say so, or
fail where SEARCHER_TEST_REQUIRE names postgres (likewise redis for the Redis journal test).
"""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import pg_admin
from searcher.config import load_study

def worker(path: Path, url: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SEARCHER_STORAGE": url}
    return subprocess.Popen([sys.executable, "-m", "searcher.cli", "optimize", str(path), "--no-progress", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def finish(procs, timeout=400):
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=timeout)
        outs.append(out)
    return outs


def study_at(url: str) -> optuna.Study:
    return optuna.load_study(study_name="tiny", storage=url)


def check_totals(study: optuna.Study, n: int) -> None:
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == n, [(t.number, t.state.name) for t in study.trials]
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    # no parameters ran twice, except a retry of a trial whose worker died
    seen = {}
    for t in finished:
        key = tuple(sorted(t.params.items()))
        if key in seen:
            assert t.system_attrs.get("failed_trial") is not None or seen[key].system_attrs.get("failed_trial")
        seen[key] = t
    for t in finished:
        if t.state == TrialState.COMPLETE:
            assert {"metrics", "history", "student", "hyperparams", "model_dir", "size_mb"} <= set(t.user_attrs)
    best = study.best_trial
    assert (Path(best.user_attrs["model_dir"]) / "model.safetensors").is_file()


def tiny_study(world, tmp_path, **search):
    return world.study(tmp_path, study={"n_trials": 12, "keep_best": 2, "cache_dir": str(tmp_path / "cache"),
                                        "pruner": {"type": "median", "n_startup_trials": 4}},
                       search={"epochs": 3, **search}, train={"num_threads": 1})


@pytest.mark.postgres
def test_four_workers_run_exactly_n_trials(world, tmp_path, pg_url, cli):
    path = tiny_study(world, tmp_path)
    procs = [worker(path, pg_url) for _ in range(4)]
    outs = finish(procs)
    assert all(p.returncode == 0 for p in procs), outs
    study = study_at(pg_url)
    check_totals(study, 12)
    assert not [t for t in study.trials if t.state == TrialState.FAIL]
    # the teacher logits were computed by exactly one of the four workers
    assert sum(out.count("teacher logits: computing once") for out in outs) == 1
    # checkpoints: only the best 2 survive, across workers
    kept = sorted(p.name for p in (tmp_path / "tiny" / "models").iterdir() if p.is_dir())
    ranked = sorted([t for t in study.trials if t.state == TrialState.COMPLETE], key=lambda t: (-t.value, t.number))
    assert kept == sorted(f"trial-{t.number:04d}" for t in ranked[:2])
    # the study opens unchanged in the optuna CLI and in searcher best
    out = subprocess.run([str(Path(sys.executable).parent / "optuna"), "trials", "--storage", pg_url,
                          "--study-name", "tiny", "-f", "json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.count('"number"') == 12
    code, board, _ = cli("best", path, "--storage", pg_url, "--top", "12")
    assert code == 0 and f"{len(ranked)} complete" in board


def running(url: str, min_epochs: int = 1) -> list:
    """The study's RUNNING trials that have reported `min_epochs` (none while the study does not exist yet)."""
    try:
        trials = study_at(url).trials
    except Exception:  # noqa: BLE001 - the study may not exist yet
        return []
    return [t for t in trials if t.state == TrialState.RUNNING and len(t.intermediate_values) >= min_epochs]


@pytest.mark.postgres
def test_a_sigkilled_worker_trial_is_retried_and_the_total_stays_right(world, tmp_path, pg_url):
    """No sleep races the workers: every step waits on a state the study shows. The victim runs alone until its
    trial has reported an epoch and is frozen (SIGSTOP) while that trial is RUNNING, so it is certainly killed in
    the middle of a trial however slow the machine (once, the victim could finish or have its trial pruned between
    the look and the kill, and then no trial was failed); the other workers start and run beside it; then it is
    killed."""
    path = tiny_study(world, tmp_path, epochs=12)
    # grace_period 20 s, not the fixture's 3: on a machine busy with other work a live worker's heartbeat thread can
    # be starved for seconds, and its trial must not be taken for a dead one's
    path.write_text(path.read_text().replace("grace_period = 3", "grace_period = 20"))
    victim = worker(path, pg_url)
    number, deadline = None, time.time() + 600
    while number is None:
        assert time.time() < deadline and victim.poll() is None, victim.stdout.read() if victim.poll() else "slow"
        time.sleep(0.5)
        if running(pg_url):  # the victim runs alone: a running trial is its trial
            victim.send_signal(signal.SIGSTOP)
            frozen = running(pg_url)  # it may have finished that trial just before it froze: then look again
            if frozen:
                number = frozen[0].number
            else:
                victim.send_signal(signal.SIGCONT)
    procs = [worker(path, pg_url) for _ in range(2)]
    deadline = time.time() + 300  # the others run trials beside the frozen one (or wait for its heartbeat)
    while time.time() < deadline and len([t for t in running(pg_url) if t.number != number]) < 2:
        assert all(p.poll() is None for p in procs), [p.stdout.read() for p in procs if p.poll() is not None]
        time.sleep(0.5)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    outs = finish(procs, timeout=900)
    assert all(p.returncode == 0 for p in procs), outs
    study = study_at(pg_url)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    # the killed worker's trial, failed by the heartbeat (the message names every failed trial's reason and the logs)
    assert [t.number for t in failed] == [number], ([(t.number, t.user_attrs.get("fail_reason"),
                                                      t.system_attrs.get("failed_trial")) for t in failed], outs)
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == number]
    assert len(retries) == 1 and retries[0].params == failed[0].params
    assert retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert failed[0].user_attrs["fail_reason"] == (f"worker stopped heartbeating (killed or lost); retried as "
                                                   f"trial {retries[0].number}")
    check_totals(study, 12)


@pytest.mark.postgres
def test_dropped_connections_lose_no_finished_trial(world, tmp_path, pg_url):
    path = tiny_study(world, tmp_path, epochs=6)
    procs = [worker(path, pg_url) for _ in range(2)]
    name = pg_url.rsplit("/", 1)[1]
    admin = pg_admin()
    dropped, deadline = 0, time.time() + 240
    while dropped < 2 and time.time() < deadline:
        time.sleep(3)
        try:
            done = len([t for t in study_at(pg_url).trials if t.state.is_finished()])
        except Exception:  # noqa: BLE001
            continue
        if done >= 2 + 3 * dropped:
            admin.cursor().execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                                   (name,))
            dropped += 1
    assert dropped == 2
    outs = finish(procs, timeout=600)
    for p, out in zip(procs, outs):
        # each worker reconnected and finished, or stopped with one clear line
        assert p.returncode == 0 or ("lost the connection to the study storage" in out and "Traceback" not in out), out
    later = worker(path, pg_url)  # whatever is left (a trial that was running when its connection died) is redone
    (out,) = finish([later])
    assert later.returncode == 0, out
    check_totals(study_at(pg_url), 12)


@pytest.mark.postgres
def test_two_workers_started_together_build_each_cache_once(world, tmp_path, pg_url):
    path = tiny_study(world, tmp_path)
    path.write_text(path.read_text().replace("n_trials = 12", "n_trials = 2"))
    procs = [worker(path, pg_url) for _ in range(2)]
    outs = finish(procs)
    assert all(p.returncode == 0 for p in procs), outs
    text = "\n".join(outs)
    assert text.count("teacher logits: computing once") == 1
    for split in ("train", "validation"):
        assert text.count(f"data: tokenizing {split} ") == 1, text


def test_two_sqlite_workers_share_one_study(world, tmp_path):
    path = tiny_study(world, tmp_path)
    path.write_text(path.read_text().replace("n_trials = 12", "n_trials = 6"))
    url = load_study(path).storage_url()
    procs = [worker(path, url) for _ in range(2)]
    outs = finish(procs)
    assert all(p.returncode == 0 for p in procs), outs
    assert "database is locked" not in "".join(outs)
    check_totals(study_at(url), 6)


def test_unwritable_checkpoint_folder_fails_the_trial_clearly(world, tmp_path, cli):
    """Each trial fails with the reason; the worker goes on, and stops with one line after three in a row."""
    path = world.study(tmp_path, study={"n_trials": 4, "output_dir": str(tmp_path / "out")})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "models").write_text("a file where the models folder should be")
    code, out, err = cli("optimize", path)
    assert code == 1 and "3 trials failed in a row" in err
    assert "cannot save the student to" in err and "free disk space or make [study] output_dir writable" in err
    study = optuna.load_study(study_name="tiny", storage=load_study(path).storage_url())
    assert len(study.trials) == 3
    for t in study.trials:
        assert t.state == TrialState.FAIL and "cannot save the student" in t.user_attrs["fail_reason"]


def test_journal_file_storage(world, tmp_path, cli):
    path = world.study(tmp_path, study={"n_trials": 2})
    url = f"journal:{tmp_path / 'study.log'}"
    code, out, err = cli("optimize", path, "--storage", url)
    assert code == 0, err
    from searcher.records.storage import open_storage

    study = optuna.load_study(study_name="tiny", storage=open_storage(url))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert cli("best", path, "--storage", url)[0] == 0


def test_redis_journal_storage(world, tmp_path, cli, redis_url):
    name = f"tiny-{uuid.uuid4().hex[:8]}"
    path = world.study(tmp_path, name=name, study={"n_trials": 2})
    code, out, err = cli("optimize", path, "--storage", redis_url)
    assert code == 0, err
    from searcher.records.storage import open_storage

    study = optuna.load_study(study_name=name, storage=open_storage(redis_url))
    assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) == 2


@pytest.mark.postgres
def test_workers_opening_a_new_database_at_the_same_instant_all_get_the_schema(pg_url):
    # they race to create optuna's tables; the losers' unique violations are retried, not fatal
    start = time.time() + 8
    code = ("import time, sys; from searcher.records.storage import open_storage; time.sleep(max(0, float(sys.argv[2]) - "
            "time.time())); s = open_storage(sys.argv[1]); print(len(s.get_all_studies()))")
    procs = [subprocess.Popen([sys.executable, "-c", code, pg_url, str(start)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(6)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
