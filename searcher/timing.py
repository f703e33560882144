"""Where a run's time went: wall time by phase (teacher fine-tune, training, evaluation, export, ...), summed over
this process's work, for the line `searcher optimize` prints at the end.

A phase inside another counts toward the outer one: the teacher's fine-tune trains and evaluates, and is one phase.
Work done in a background thread beside the others (a kept student's export and latency rounds while the next trial
trains: `background()`) is summed apart, since its time overlaps theirs. This module knows nothing of models or
studies; the stages name their phases with `phase(...)`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Iterator

# the order the summary line lists them in (the order a study meets them)
ORDER = ("teacher fine-tune", "teacher logits", "building", "training", "evaluation", "saving", "ONNX export",
         "parity", "latency rounds", "after trial")

_totals: dict[str, float] = {}
_beside: dict[str, float] = {}  # phases run in a background thread, overlapping the others
_state = threading.local()
_lock = threading.Lock()


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    if getattr(_state, "inside", False):
        yield
        return
    _state.inside = True
    started = time.perf_counter()
    try:
        yield
    finally:
        _state.inside = False
        into = _beside if getattr(_state, "background", False) else _totals
        with _lock:
            into[name] = into.get(name, 0.0) + time.perf_counter() - started


@contextlib.contextmanager
def background() -> Iterator[None]:
    """The phases of this thread's work inside are summed apart, as work beside the main thread's."""
    _state.background = True
    try:
        yield
    finally:
        _state.background = False


def totals() -> dict[str, float]:
    with _lock:
        return dict(_totals)


def beside() -> dict[str, float]:
    with _lock:
        return dict(_beside)


def reset() -> None:
    with _lock:
        _totals.clear()
        _beside.clear()


def _ordered(totals_: dict[str, float]) -> list[tuple[str, float]]:
    names = [n for n in ORDER if n in totals_] + sorted(set(totals_) - set(ORDER))
    return [(n, totals_[n]) for n in names]  # every phase that ran, however short (a 0s phase still ran)


def summary(wall_s: float) -> str:
    """e.g. "teacher fine-tune 151s (25%), training 380s (63%), ..., other 20s (3%)" over `wall_s` seconds, then
    "; in the background beside them: ONNX export 40s, ..." when kept students were finished beside training."""
    done, aside = totals(), beside()
    parts = _ordered(done)
    parts.append(("other", max(0.0, wall_s - sum(done.values()))))
    line = ", ".join(f"{n} {s:.0f}s ({100 * s / wall_s:.0f}%)" if wall_s > 0 else f"{n} {s:.0f}s" for n, s in parts)
    if aside:
        line += "; in the background beside them: " + ", ".join(f"{n} {s:.0f}s" for n, s in _ordered(aside))
    return line
