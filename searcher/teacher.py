"""A teacher's building blocks: load a classifier, check it fits the data, hash its content, cache its logits.

The teacher objects a study builds (searcher.teachers) are made of these.

The teacher's logits are computed once per (teacher weights, tokenizer, data, max_length, device kind and AMP dtype)
and stored on disk; every trial of every run trains against that file. Calling the teacher at each step of each
trial, as the textbook DistillationTrainer does, costs ~18x a small student's training step (../shared/STACK.md).
Building is guarded by a file lock and written atomically, so workers that start together build it once and never
read half a file; a damaged cache is rebuilt with one log line. Fine-tuning a base teacher is searcher.finetune.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from searcher import files, timing
from searcher.data import Split, Task, locate
from searcher.errors import TeacherError, first_line
from searcher.runtime import Runtime

log = logging.getLogger(__name__)

GENERIC_LABEL = re.compile(r"^(LABEL_)?\d+$")


@dataclass(frozen=True)
class TeacherLogits:
    """Cached teacher outputs for each split (float32, shape (N, num_labels)) and the teacher's metrics."""

    splits: dict  # split name -> np.ndarray
    metrics: dict  # split name -> {cross_entropy, accuracy, f1, precision, recall}


def locate_source(resolved: str) -> str:
    """A resolved teacher source as from_pretrained takes it: a package: source becomes its folder."""
    if resolved.startswith("package:"):
        try:
            return str(locate(resolved))
        except Exception as e:  # DataError from locate: re-raise as a teacher problem
            raise TeacherError(str(e)) from e
    return resolved


def load_config(src: str, revision: Optional[str] = None, where: str = "[teacher] model/base"):
    """A teacher's transformers config (a small download at most): used to check labels before any work."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(src, revision=revision)
    except Exception as e:
        raise TeacherError(f"cannot load teacher {src!r}: {first_line(e)}; check the Hub id (and network or "
                           f"HF_HUB_OFFLINE cache), or point {where} at a local folder") from e


def label_names(teacher_config) -> Optional[list[str]]:
    """The teacher's label names when they are real names (not LABEL_0, LABEL_1, ...)."""
    id2label = getattr(teacher_config, "id2label", None) or {}
    names = [id2label[i] for i in sorted(id2label)]
    if not names or all(GENERIC_LABEL.match(str(n)) for n in names):
        return None
    return [str(n) for n in names]


def check_labels(name: str, teacher_config, task: Task) -> None:
    """A fine-tuned teacher (`name`, as the study file gives it) must predict exactly the data's labels, in the same
    order, with a head of the study's task kind."""
    kind = task.kind
    problem = getattr(teacher_config, "problem_type", None)
    if problem and problem != kind.problem_type:
        raise TeacherError(f"teacher {name!r} is a {problem} model, and this study is "
                           f"{kind.title}; use a teacher fine-tuned for it, set [data] task to match, or set "
                           f"[teacher] base = ... to fine-tune one")
    n = getattr(teacher_config, "num_labels", None)
    if n != task.num_labels:
        raise TeacherError(f"teacher {name!r} predicts {n} labels but the data has "
                           f"{task.num_labels} ({', '.join(task.label_names[:6])}{'...' if task.num_labels > 6 else ''}); "
                           f"use a teacher fine-tuned on this task, or set [teacher] base = ... to fine-tune one")
    names = label_names(teacher_config)
    if kind.name == "regression":
        return  # one score: no label names to line up
    if names is not None and set(names) != set(task.label_names):
        raise TeacherError(f"teacher {name!r} predicts the labels {names[:6]} but the data has "
                           f"{list(task.label_names)[:6]}; set [data] label_names to the teacher's names in its "
                           f"order, or use a teacher fine-tuned on this data")
    if names is not None and names != list(task.label_names):
        raise TeacherError(f"teacher {name!r} has its labels {names} in a different order than the data's "
                           f"{list(task.label_names)}; set [data] label_names = {names}")


NOT_MODEL_FILES = ("README.md", ".gitattributes")


def identity(path_or_id: str, teacher_config=None, revision: Optional[str] = None) -> str:
    """A short key that changes whenever the teacher's weights, config or any tokenizer file change: a local folder
    is hashed by the content of every file in it (not sizes and dates, which a copy or an edit can keep)."""
    p = Path(path_or_id)
    h = hashlib.sha256()
    if p.is_dir():
        for f in sorted(p.iterdir()):
            if not f.is_file() or f.name in NOT_MODEL_FILES:
                continue
            h.update(f.name.encode() + b"\0")
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    else:
        commit = getattr(teacher_config, "_commit_hash", None) if teacher_config is not None else None
        h.update(f"hub:{path_or_id}@{commit or revision or 'main'}".encode())
    return h.hexdigest()[:20]


def shape(model) -> dict:
    """Layers, hidden size, heads and parameter count of a model (JSON-safe)."""
    cfg = model.config
    return {
        "layers": int(getattr(cfg, "num_hidden_layers", getattr(cfg, "n_layers", 0)) or 0),
        "hidden": int(getattr(cfg, "hidden_size", getattr(cfg, "dim", 0)) or 0),
        "heads": int(getattr(cfg, "num_attention_heads", getattr(cfg, "n_heads", 0)) or 0),
        "params": int(model.num_parameters()),
    }


def load_model(path_or_id: str, task: Task, revision: Optional[str] = None, new_head: bool = False):
    """The teacher as a sequence classifier (a base gets a new head sized for the task's labels)."""
    kwargs = {}
    if new_head:
        kwargs = {"num_labels": task.num_labels, "id2label": task.id2label, "label2id": task.label2id,
                  "problem_type": task.kind.problem_type,
                  "ignore_mismatched_sizes": True}  # a base with a head of another width gets a new one
    try:
        return load_classifier(path_or_id, revision=revision, **kwargs)
    except Exception as e:
        raise TeacherError(f"cannot load teacher {path_or_id!r}: {first_line(e)}; it must be a sequence "
                           f"classifier (or a base with [teacher] base = ...) with a tokenizer") from e


def load_classifier(path_or_id: str, revision: Optional[str] = None, **kwargs):
    """(model, tokenizer) through from_pretrained, without the "newly initialized classifier" warning that a new
    head always triggers here (a base teacher or a pretrained student gets one on purpose)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path_or_id, revision=revision, **kwargs)
        return model, AutoTokenizer.from_pretrained(path_or_id, revision=revision)
    finally:
        hf_logging.set_verbosity(verbosity)


def compute_logits(model, enc, runtime: Runtime, batch_size: int) -> np.ndarray:
    """One teacher forward pass over a split (tests count calls to this function)."""
    from searcher.inference import logits_of

    return logits_of(model, enc, runtime, batch_size)


def logits_path(cache_dir: Path, parts: list) -> Path:
    """Where a teacher's cached logits live: keyed by what they depend on (`parts`: the teacher's content, the data,
    max_length, and the device kind and AMP dtype they were computed with: bf16 logits on a GPU differ from fp32 ones
    on a CPU)."""
    return Path(cache_dir) / "logits" / f"{hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]}.npz"


def device_kind(runtime: Runtime) -> str:
    return "cuda" if runtime.is_cuda else runtime.device.split(":")[0]


def cached_logits(path: Path, task: Task, label: Callable[[str, Split], np.ndarray], what: str) -> TeacherLogits:
    """A teacher's logits for every split: read from the cache at `path`, or computed once under a lock by
    `label(split name, split)` (which loads the teacher on its first call)."""
    found = _read_logits(path, task)
    if found is not None:
        return found
    with files.lock(path):
        found = _read_logits(path, task)  # another worker may have built it while we waited for the lock
        if found is not None:
            return found
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


def _read_logits(path: Path, task: Task) -> Optional[TeacherLogits]:
    """The cached logits if they are whole and fit the task (every split, its row count, one finite float row per
    example, the label count); None means build them (a damaged file is said once in the log)."""
    meta_path = path.with_suffix(".json")
    if not path.is_file() and not meta_path.is_file():
        return None
    try:
        with files.reading_cache("teacher logits cache", path):
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
    except files.DamagedCache as e:
        files.note_damaged(log, e)
        return None
    return TeacherLogits(splits, meta["metrics"])


EXTRA_CHUNK = 16384  # rows per teacher pass over extra text: the logits go to disk, never all into memory


def extra_path(cache_dir: Path, name: str, parts: list) -> Path:
    return Path(cache_dir) / "logits" / f"{name}-{hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]}.npy"


def cached_extra_logits(path: Path, name: str, rows: int, width: int,
                        label: Callable[[int, int], np.ndarray]) -> np.ndarray:
    """A teacher's logits for text it alone labels (transfer text, augmented copies), computed once by
    `label(start, stop)` in chunks and kept on disk as float16, memory-mapped: a worker reads only the rows it trains
    on, however large the set (1M rows x 151 labels is 0.3 GB on disk and next to nothing resident). float16 keeps ~3
    significant digits of a logit, far finer than what a temperature-softened KL target needs."""
    found = _read_extra(path, rows)
    if found is not None:
        return found
    with files.lock(path):
        found = _read_extra(path, rows)
        if found is not None:
            return found
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
    return _read_extra(path, rows, strict=True)


def _read_extra(path: Path, rows: int, strict: bool = False) -> Optional[np.ndarray]:
    if not path.is_file():
        return None
    try:
        with files.reading_cache("teacher logits cache", path):
            files.check_seal(path)
            logits = np.load(path, mmap_mode="r")
            if logits.ndim != 2 or logits.shape[0] != rows or logits.dtype != np.float16:
                raise ValueError(f"shape {logits.shape} {logits.dtype}, expected ({rows}, labels) float16")
        return logits
    except files.DamagedCache as e:
        if strict:
            raise
        files.note_damaged(log, e)
        return None


def split_metrics(logits: np.ndarray, labels: np.ndarray, kind=None) -> dict:
    """The teacher's scores on a split: its plain label loss (cross-entropy, MSE or BCE: "cross_entropy" in the
    records) and the task kind's built-in metrics."""
    import torch

    from searcher.tasks import SingleLabel

    kind = kind or SingleLabel()
    loss = float(kind.kd(torch.from_numpy(logits), None, torch.from_numpy(labels), 1.0, 1.0)) / max(1, len(labels))
    return {"cross_entropy": loss, **kind.scores(logits, labels)}
