"""A teacher's logits, computed once and cached on disk: for every split of the data, and for the text only the
teacher labels (transfer text, augmented copies: float16, memory-mapped).

The teacher's logits are computed once per (teacher weights, tokenizer, data, max_length, device kind and AMP dtype)
and stored on disk; every trial of every run trains against that file. Calling the teacher at each step of each
trial, as the textbook DistillationTrainer does, costs ~18x a small student's training step (../shared/STACK.md).
Building is guarded by a file lock and written atomically, so workers that start together build it once and never
read half a file; a damaged cache is rebuilt with one log line.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from searcher import files, timing
from searcher.data.loading import Split, Task
from searcher.train.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeacherLogits:
    """Cached teacher outputs for each split (float32, shape (N, num_labels)) and the teacher's metrics."""

    splits: dict  # split name -> np.ndarray
    metrics: dict  # split name -> {cross_entropy, accuracy, f1, precision, recall}


def compute_logits(model, enc, runtime: Runtime, batch_size: int) -> np.ndarray:
    """One teacher forward pass over a split (tests count calls to this function)."""
    from searcher.train.inference import logits_of

    return logits_of(model, enc, runtime, batch_size)


def logits_path(cache_dir: Path, parts: list) -> Path:
    """Where a teacher's cached logits live: keyed by what they depend on (`parts`: the teacher's content, the data,
    max_length, and the device kind and AMP dtype they were computed with: bf16 logits on a GPU differ from fp32 ones
    on a CPU)."""
    return Path(cache_dir) / "logits" / f"{files.cache_key(parts)}.npz"


def device_kind(runtime: Runtime) -> str:
    return "cuda" if runtime.is_cuda else runtime.device.split(":")[0]


WHAT = "teacher logits cache"


def cached_logits(path: Path, task: Task, label: Callable[[str, Split], np.ndarray], what: str) -> TeacherLogits:
    """A teacher's logits for every split: read from the cache at `path`, or computed once under a lock by
    `label(split name, split)` (which loads the teacher on its first call)."""

    def build() -> TeacherLogits:
        log.info("teacher logits: computing once for %s (%s examples); cached in %s", what,
                 sum(len(s) for s in task.splits().values()), path)
        splits, metrics = {}, {}
        for name, split in task.splits().items():
            with timing.phase("teacher logits"):
                splits[name] = label(name, split)
            if name != "train":
                metrics[name] = split_metrics(splits[name], split.labels, task.kind)
        files.save_npz(path, splits)
        files.write_text(path.with_suffix(".json"), json.dumps({"teacher": what, "data": task.fingerprint,
                                                                "metrics": metrics}, indent=1))
        return TeacherLogits(splits, metrics)

    return files.cached(WHAT, path, lambda: _read_logits(path, task), build, log)


def _read_logits(path: Path, task: Task) -> Optional[TeacherLogits]:
    """The cached logits (None: not cached); raises unless they are whole and fit the task (every split, its row
    count, one finite float row per example, the label count)."""
    meta_path = path.with_suffix(".json")
    if not path.is_file() and not meta_path.is_file():
        return None
    meta = files.read_json(meta_path)
    if meta is None or not isinstance(meta.get("metrics"), dict):
        raise ValueError(f"{meta_path.name} is missing or has no metrics")
    files.check_seal(path)
    with np.load(path) as z:
        splits = {name: z[name] for name in z.files}
    for name, split in task.splits().items():
        a = splits.get(name)
        if a is None or a.ndim != 2 or a.shape != (len(split), task.num_labels) or not np.isfinite(a).all():
            raise ValueError(f"split {name!r} has shape {None if a is None else a.shape}, expected "
                             f"({len(split)}, {task.num_labels})")
    if set(meta["metrics"]) != set(task.splits()) - {"train"}:
        raise ValueError("its metrics do not cover the evaluation splits")
    return TeacherLogits(splits, meta["metrics"])


EXTRA_CHUNK = 16384  # rows per teacher pass over extra text: the logits go to disk, never all into memory


def extra_path(cache_dir: Path, name: str, parts: list) -> Path:
    return Path(cache_dir) / "logits" / f"{name}-{files.cache_key(parts)}.npy"


def cached_extra_logits(path: Path, name: str, rows: int, width: int,
                        label: Callable[[int, int], np.ndarray]) -> np.ndarray:
    """A teacher's logits for text it alone labels (transfer text, augmented copies), computed once by
    `label(start, stop)` in chunks and kept on disk as float16, memory-mapped: a worker reads only the rows it trains
    on, however large the set (1M rows x 151 labels is 0.3 GB on disk and next to nothing resident). float16 keeps ~3
    significant digits of a logit, far finer than what a temperature-softened KL target needs."""

    def build() -> np.ndarray:
        log.info("teacher logits: labelling %d %s rows once; cached in %s", rows, name, path)
        with files.atomic_file(path) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(rows, width))
            for start in range(0, rows, EXTRA_CHUNK):
                stop = min(start + EXTRA_CHUNK, rows)
                with timing.phase("teacher logits"):
                    out[start:stop] = label(start, stop)
            out.flush()
            del out
            files.seal(tmp, path)
        with files.reading_cache(WHAT, path):  # just written: damaged now is a fault of the disk, not a cache miss
            return _read_extra(path, rows)

    return files.cached(WHAT, path, lambda: _read_extra(path, rows), build, log)


def _read_extra(path: Path, rows: int) -> Optional[np.ndarray]:
    if not path.is_file():
        return None
    files.check_seal(path)
    logits = np.load(path, mmap_mode="r")
    if logits.ndim != 2 or logits.shape[0] != rows or logits.dtype != np.float16:
        raise ValueError(f"shape {logits.shape} {logits.dtype}, expected ({rows}, labels) float16")
    return logits


def split_metrics(logits: np.ndarray, labels: np.ndarray, kind=None) -> dict:
    """The teacher's scores on a split: its plain label loss (cross-entropy, MSE or BCE: "cross_entropy" in the
    records) and the task kind's built-in metrics."""
    import torch

    from searcher.tasks import SingleLabel

    kind = kind or SingleLabel()
    loss = float(kind.kd(torch.from_numpy(logits), None, torch.from_numpy(labels), 1.0, 1.0)) / max(1, len(labels))
    return {"cross_entropy": loss, **kind.scores(logits, labels)}
