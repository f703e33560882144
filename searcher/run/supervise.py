"""Run worker processes side by side and show them as one: every line a worker prints is printed with its label
(its stdout to stdout, its stderr to stderr), whole lines only, so the workers' lines never mix mid-line.

- Ctrl-C, SIGTERM or SIGHUP to the supervisor stops every worker as its own Ctrl-C would (SIGTERM, which a
  `searcher optimize` worker takes as Ctrl-C: it queues its running trial again and exits 130); a second one kills
  them (their trials are then retried by the heartbeat when the study runs again). Workers run in a process group of
  their own, so that a terminal's Ctrl-C reaches them once, through the supervisor, and never twice.
- A worker that dies while the others run is reported at once, and the others go on.

What a worker runs is the caller's (a command line and its environment); this module knows nothing of studies or
training, and must not: the same supervisor serves however a worker trains.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import IO, Optional

log = logging.getLogger(__name__)

POLL_S = 0.2
KILLED_NOTE = ", and the trial it was running is failed by the heartbeat and run again"


@dataclass(frozen=True)
class Spec:
    label: str
    argv: list[str]
    env: dict[str, str]  # the whole environment of the worker


@dataclass
class Outcome:
    codes: dict[str, int] = field(default_factory=dict)  # label -> exit code; -N: killed by signal N
    interrupted: bool = False  # stopped by a signal to the supervisor


def describe(code: int) -> str:
    """How a worker ended, in words: "exited with code 1", "was killed by SIGKILL"."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def run(specs: list[Spec], out: Optional[IO[str]] = None, err: Optional[IO[str]] = None) -> Outcome:
    """Start every worker, show their lines, and return once all have ended."""
    out, err = out or sys.stdout, err or sys.stderr
    outcome = Outcome()
    with _Stop() as stop:  # handlers first: a worker inherits them reset to the default, so SIGTERM stops it
        procs = {s.label: _start(s) for s in specs}
        printing = threading.Lock()
        pumps = [threading.Thread(target=_pump, args=(stream, label, target, printing), daemon=True)
                 for label, p in procs.items() for stream, target in ((p.stdout, out), (p.stderr, err))]
        for pump in pumps:
            pump.start()
        log.info("workers: %s", ", ".join(f"{label} (pid {p.pid})" for label, p in procs.items()))
        sent, signalled = 0, set()
        while True:
            for label, p in procs.items():
                if label not in outcome.codes and p.poll() is not None:
                    outcome.codes[label] = p.returncode
                    if p.returncode and not sent and len(outcome.codes) < len(procs):
                        log.warning("worker %s %s; the other workers go on%s", label, describe(p.returncode),
                                    KILLED_NOTE if p.returncode < 0 else " (see its lines above)")
            if len(outcome.codes) == len(procs):
                break
            if stop.count > sent:
                sent = stop.count
                signalled |= _signal_all(procs, outcome, signal.SIGTERM if sent == 1 else signal.SIGKILL)
            stop.wait(POLL_S)
        for pump in pumps:
            pump.join()
        # a stop that reached only workers that were ending anyway (each with its work done) interrupted nothing
        outcome.interrupted = any(outcome.codes[label] != 0 for label in signalled)
    return outcome


def _start(spec: Spec) -> subprocess.Popen:
    return subprocess.Popen(spec.argv, env=spec.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace", bufsize=1,
                            start_new_session=True)  # out of the terminal's process group: see the docstring


def _pump(stream: IO[str], label: str, target: IO[str], printing: threading.Lock) -> None:
    for line in stream:
        text = line if line.endswith("\n") else line + "\n"  # a last line without its newline
        with printing:
            target.write(f"[{label}] {text}")
            target.flush()
    stream.close()


def _signal_all(procs: dict[str, subprocess.Popen], outcome: Outcome, sig: signal.Signals) -> set[str]:
    """Send `sig` to every worker still running; the labels of those it was sent to."""
    live = [label for label in procs if label not in outcome.codes]
    if sig == signal.SIGTERM:
        log.warning("stopping the workers (%s): each queues its running trial again; a second Ctrl-C kills them",
                    ", ".join(live))
    else:
        log.warning("killing the workers (%s); their running trials are retried when the study runs again",
                    ", ".join(live))
    for label in live:
        try:
            procs[label].send_signal(sig)
        except ProcessLookupError:  # it ended a moment ago: polled next round
            pass
    return set(live)


class _Stop:
    """Counts SIGINT, SIGTERM and SIGHUP while the workers run (an ignored SIGHUP, as under nohup, stays ignored);
    the previous handlers come back afterwards. Outside the main thread signals cannot be caught: none are."""

    def __init__(self):
        self.count = 0
        self._event = threading.Event()
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        self.count += 1
        self._event.set()

    def wait(self, seconds: float) -> None:
        if self._event.wait(seconds):
            self._event.clear()

    def __enter__(self) -> "_Stop":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
                    continue
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
