"""Where a run's time went: wall time by phase (teacher fine-tune, training, evaluation, export, ...), summed over
this process's work, for the line `searcher optimize` prints at the end.

A phase inside another counts toward the outer one: the teacher's fine-tune trains and evaluates, and is one phase.
This module knows nothing of models or studies; the stages name their phases with `phase(...)`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Iterator

# the order the summary line lists them in (the order a study meets them)
ORDER = ("teacher fine-tune", "teacher logits", "training", "evaluation", "saving", "ONNX export", "parity",
         "latency rounds")

_totals: dict[str, float] = {}
_state = threading.local()


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
        _totals[name] = _totals.get(name, 0.0) + time.perf_counter() - started


def totals() -> dict[str, float]:
    return dict(_totals)


def reset() -> None:
    _totals.clear()


def summary(wall_s: float) -> str:
    """e.g. "teacher fine-tune 151s (25%), training 380s (63%), ..., other 20s (3%)" over `wall_s` seconds."""
    names = [n for n in ORDER if n in _totals] + sorted(set(_totals) - set(ORDER))
    parts = [(n, _totals[n]) for n in names]  # every phase that ran, however short (a 0s phase still ran)
    parts.append(("other", max(0.0, wall_s - sum(_totals.values()))))
    return ", ".join(f"{n} {s:.0f}s ({100 * s / wall_s:.0f}%)" if wall_s > 0 else f"{n} {s:.0f}s" for n, s in parts)
