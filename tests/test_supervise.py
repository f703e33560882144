"""searcher.run.supervise, first with small programs as workers, then as `searcher optimize --workers-per-device 2`.

No GPU is needed: without --devices the supervisor starts N workers on the study's device, the CPU here, which is
the same supervisor `--devices` uses. No sleep races a worker: each step waits on a state the study database shows.
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from searcher.config import load_study
from searcher.run import devices, supervise
from test_optimize import _sigint_default
from test_scale_out import check_totals

# a window to act while two workers' trials both run: at 20 epochs a trial took 2 s on an idle machine (0.1 s an
# epoch), too short for two to overlap mid-trial, and the SIGKILL test failed there; 60 leaves seconds
SLOW = {"epochs": 60}


def program(label: str, code: str) -> supervise.Spec:
    return supervise.Spec(label, [sys.executable, "-c", code], dict(os.environ))


def test_each_line_is_shown_whole_with_its_workers_label_and_every_exit_code_is_kept():
    import io

    out, err = io.StringIO(), io.StringIO()
    outcome = supervise.run([
        program("a", "import sys; print('one'); print('warn', file=sys.stderr); sys.stdout.write('no newline')"),
        program("b", "import os, signal; print('two', flush=True); os.kill(os.getpid(), signal.SIGKILL)"),
        program("c", "raise SystemExit(3)"),
    ], out=out, err=err)
    assert sorted(out.getvalue().splitlines()) == ["[a] no newline", "[a] one", "[b] two"]
    assert err.getvalue() == "[a] warn\n"
    assert outcome.codes == {"a": 0, "b": -signal.SIGKILL, "c": 3} and not outcome.interrupted
    assert supervise.describe(-signal.SIGKILL) == "was killed by SIGKILL"
    assert supervise.describe(3) == "exited with code 3"


def test_a_second_ctrl_c_kills_workers_that_do_not_stop(request):
    """Workers that ignore the SIGTERM of the first Ctrl-C are killed by the second. Each signal is sent to this
    process once the supervisor has acted on the one before (Python runs a handler once for signals that arrive
    together); the workers sleep meanwhile, so the supervisor is certainly still waiting for them."""
    import io
    import logging

    said = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: said.append(record.getMessage())
    supervise.log.addHandler(handler)  # directly: the in-process CLI of other tests stops "searcher" propagating
    request.addfinalizer(lambda: supervise.log.removeHandler(handler))
    hang = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); "
            "time.sleep(600)")
    out = io.StringIO()

    def interrupt_twice():
        while out.getvalue().count("up") < 2:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)
        while not any(line.startswith("stopping the workers") for line in said):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_twice, daemon=True).start()
    outcome = supervise.run([program("a", hang), program("b", hang)], out=out, err=io.StringIO())
    assert outcome.codes == {"a": -signal.SIGKILL, "b": -signal.SIGKILL} and outcome.interrupted
    assert any(line.startswith("killing the workers (a, b)") for line in said), said
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the supervisor's handler is gone


class Supervisor:
    """`searcher optimize STUDY --workers-per-device 2` in a process of its own, its output read as it comes."""

    def __init__(self, path: Path, *extra: str):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "searcher.cli", "optimize", str(path),
                                      "--workers-per-device", "2", *extra], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env, preexec_fn=_sigint_default)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self._reader.start()

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def workers(self, timeout: float = 300) -> dict[str, int]:
        """{label: pid} from the supervisor's "workers: cpu.1 (pid N), ..." line."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = dict((label, int(pid)) for label, pid in re.findall(r"(cpu\.\d) \(pid (\d+)\)", self.text))
            if len(found) == 2:
                return found
            assert self.proc.poll() is None, self.text
            time.sleep(0.2)
        raise AssertionError(f"no workers line in time: {self.text}")

    def finish(self, timeout: float = 900) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=60)
        return code


def study_of(path: Path) -> optuna.Study:
    return optuna.load_study(study_name="tiny", storage=load_study(path).storage_url())


def two_running(path: Path, supervisor: Supervisor, timeout: float = 600) -> set[int]:
    """Wait until two trials are RUNNING (one per worker: a worker runs one at a time), each past its first epoch and
    well before its last; return their numbers."""
    db = path.parent / "tiny.db"
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert supervisor.proc.poll() is None, supervisor.text
        if db.exists():
            try:
                running = [t for t in study_of(path).get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                           if 1 <= len(t.intermediate_values) <= SLOW["epochs"] - 6]
            except Exception:  # noqa: BLE001 - the study may not exist yet
                running = []
            if len(running) == 2:
                return {t.number for t in running}
        time.sleep(0.2)
    raise AssertionError(f"two trials never ran side by side: {supervisor.text}")


def test_two_cpu_workers_run_exactly_n_trials_with_a_share_of_the_cores_each(world, tmp_path):
    path = world.study(tmp_path, study={"n_trials": 6, "keep_best": 2})
    supervisor = Supervisor(path)
    assert supervisor.finish() == 0, supervisor.text
    out = supervisor.text
    study = study_of(path)
    check_totals(study, 6)
    assert not [t for t in study.trials if t.state == TrialState.FAIL]
    # one merged view: both workers' lines, each with its label; the leaderboard and the best student once
    assert "[cpu.1] " in out and "[cpu.2] " in out and "Traceback" not in out
    trial_lines = [line for line in out.splitlines() if re.match(r"\[cpu\.\d\] trial +\d+ ", line)]
    assert len(trial_lines) == 6, out
    assert out.count("best student: trial") == 1 and out.count("rank  trial") == 1
    assert "workers ended" in out and "cpu.1 done" in out and "cpu.2 done" in out
    # each CPU worker got its share of the cores (the study sets no num_threads), and its trials were timed with it
    threads = max(1, devices.cores() // 2)
    assert out.count(f"{threads} torch threads") == 2, out
    assert {t.user_attrs["latency_ms"]["threads"] for t in study.trials} == {threads}


def test_ctrl_c_stops_every_worker_and_queues_their_trials_again(world, tmp_path):
    path = world.study(tmp_path, study={"n_trials": 6}, search=SLOW)
    supervisor = Supervisor(path)
    pids = supervisor.workers()
    numbers = two_running(path, supervisor)
    started = time.monotonic()
    supervisor.proc.send_signal(signal.SIGINT)  # to the supervisor alone, as a terminal's Ctrl-C reaches it
    assert supervisor.finish(timeout=120) == 130, supervisor.text
    assert time.monotonic() - started < 60  # at once, not when a heartbeat expires
    out = supervisor.text
    assert "stopping the workers" in out and "queued again" in out and "Traceback" not in out
    for pid in pids.values():  # no worker is left behind
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"worker {pid} still runs")
    study = study_of(path)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    failed = {t.number: t for t in study.trials if t.state == TrialState.FAIL}
    assert set(failed) == numbers
    assert all("interrupted" in t.user_attrs["fail_reason"] for t in failed.values())
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert sorted(str(t.system_attrs["fixed_params"]) for t in waiting) == \
        sorted(str(t.params) for t in failed.values())


def test_a_sigkilled_worker_is_reported_and_its_trial_retried_by_the_other(world, tmp_path):
    # grace_period 20 s, not the fixture's 3: on a busy machine a live worker's heartbeat can be starved for seconds
    path = world.study(tmp_path, study={"n_trials": 4, "grace_period": 20}, search=SLOW)
    supervisor = Supervisor(path)
    pids = supervisor.workers()
    victim, survivor = "cpu.1", "cpu.2"
    while True:  # frozen, neither can finish its trial before the kill however slow the machine
        numbers = two_running(path, supervisor)
        for pid in pids.values():
            os.kill(pid, signal.SIGSTOP)
        if {t.number for t in study_of(path).get_trials(states=(TrialState.RUNNING,))} == numbers:
            break
        for pid in pids.values():
            os.kill(pid, signal.SIGCONT)
    os.kill(pids[victim], signal.SIGKILL)
    os.kill(pids[survivor], signal.SIGCONT)
    assert supervisor.finish() == 1, supervisor.text
    out = supervisor.text
    assert f"worker {victim} was killed by SIGKILL; the other workers go on" in out
    assert f"1 of 2 workers failed ({victim} was killed by SIGKILL)" in out and "Traceback" not in out
    assert out.count("best student: trial") == 1  # the survivor finished the study: its leaderboard is shown
    study = study_of(path)
    (killed,) = [t for t in study.trials if t.state == TrialState.FAIL]
    assert killed.number in numbers
    (retry,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed.number]
    assert retry.params == killed.params and retry.state == TrialState.COMPLETE
    assert killed.user_attrs["fail_reason"] == (f"worker stopped heartbeating (killed or lost); retried as trial "
                                                f"{retry.number}")
    check_totals(study, 4)
