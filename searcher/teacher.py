"""Teacher stage: load the teacher, check it fits the data, and cache its logits.

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
from typing import Optional

import numpy as np

from searcher import files, timing
from searcher.config import StudyConfig
from searcher.data import Task, locate
from searcher.errors import TeacherError, first_line
from searcher.runtime import Runtime
from searcher.tokens import encode

log = logging.getLogger(__name__)

GENERIC_LABEL = re.compile(r"^(LABEL_)?\d+$")


@dataclass(frozen=True)
class TeacherLogits:
    """Cached teacher outputs for each split (float32, shape (N, num_labels)) and the teacher's metrics."""

    splits: dict  # split name -> np.ndarray
    metrics: dict  # split name -> {cross_entropy, accuracy, f1, precision, recall}


def source(config: StudyConfig) -> str:
    """The teacher (or base) as a local folder or a Hub id."""
    raw = config.teacher.model or config.teacher.base
    resolved = config.resolve_model(raw)
    if resolved.startswith("package:"):
        try:
            return str(locate(resolved))
        except Exception as e:  # DataError from locate: re-raise as a teacher problem
            raise TeacherError(str(e)) from e
    return resolved


def load_config(config: StudyConfig):
    """The teacher's transformers config (a small download at most): used to check labels before any work."""
    from transformers import AutoConfig

    src = source(config)
    try:
        return AutoConfig.from_pretrained(src, revision=config.teacher.revision)
    except Exception as e:
        raise TeacherError(f"cannot load teacher {src!r}: {first_line(e)}; check the Hub id (and network or "
                           f"HF_HUB_OFFLINE cache), or point [teacher] model/base at a local folder") from e



def label_names(teacher_config) -> Optional[list[str]]:
    """The teacher's label names when they are real names (not LABEL_0, LABEL_1, ...)."""
    id2label = getattr(teacher_config, "id2label", None) or {}
    names = [id2label[i] for i in sorted(id2label)]
    if not names or all(GENERIC_LABEL.match(str(n)) for n in names):
        return None
    return [str(n) for n in names]


def check_labels(config: StudyConfig, teacher_config, task: Task) -> None:
    """A fine-tuned teacher must predict exactly the data's labels, in the same order, with a head of the study's
    task kind."""
    if config.teacher.base:
        return  # a base gets a fresh head with the data's labels
    kind = task.kind
    problem = getattr(teacher_config, "problem_type", None)
    if problem and problem != kind.problem_type:
        raise TeacherError(f"teacher {config.teacher.model!r} is a {problem} model, and this study is "
                           f"{kind.title}; use a teacher fine-tuned for it, set [data] task to match, or set "
                           f"[teacher] base = ... to fine-tune one")
    n = getattr(teacher_config, "num_labels", None)
    if n != task.num_labels:
        raise TeacherError(f"teacher {config.teacher.model!r} predicts {n} labels but the data has "
                           f"{task.num_labels} ({', '.join(task.label_names[:6])}{'...' if task.num_labels > 6 else ''}); "
                           f"use a teacher fine-tuned on this task, or set [teacher] base = ... to fine-tune one")
    names = label_names(teacher_config)
    if kind.name == "regression":
        return  # one score: no label names to line up
    if names is not None and set(names) != set(task.label_names):
        raise TeacherError(f"teacher {config.teacher.model!r} predicts the labels {names[:6]} but the data has "
                           f"{list(task.label_names)[:6]}; set [data] label_names to the teacher's names in its "
                           f"order, or use a teacher fine-tuned on this data")
    if names is not None and names != list(task.label_names):
        raise TeacherError(f"teacher labels {names} are in a different order than the data's "
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


def logits_key(config: StudyConfig, task: Task, teacher_identity: str, runtime: Runtime) -> str:
    """What the cached logits depend on: the teacher's content (`identity`), the data, max_length, and the device
    kind and AMP dtype they were computed with (bf16 logits on a GPU differ from fp32 ones on a CPU)."""
    device = "cuda" if runtime.is_cuda else runtime.device.split(":")[0]
    parts = [teacher_identity, task.fingerprint, config.data.max_length, device, runtime.amp]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


def cached_logits(config: StudyConfig, task: Task, teacher_dir: str, teacher_identity: str,
                  runtime: Runtime) -> TeacherLogits:
    """The teacher's logits for every split: read from the cache, or computed once under a lock."""
    path = config.cache_dir / "logits" / f"{logits_key(config, task, teacher_identity, runtime)}.npz"
    found = _read_logits(path, task)
    if found is not None:
        return found
    with files.lock(path):
        found = _read_logits(path, task)  # another worker may have built it while we waited for the lock
        if found is not None:
            return found
        log.info("teacher logits: computing once for %s (%s examples); cached in %s", teacher_dir,
                 sum(len(s) for s in task.splits().values()), path)
        revision = None if config.teacher.base else config.teacher.revision
        model, tokenizer = load_model(teacher_dir, task, revision)
        model.to(runtime.device)
        splits, metrics = {}, {}
        for name, split in task.splits().items():
            enc = encode(split, tokenizer, config.data.max_length, config.cache_dir, f"{task.fingerprint}:{name}")
            with timing.phase("teacher logits"):
                splits[name] = compute_logits(model, enc, runtime, config.teacher.inference_batch_size)
            if name != "train":
                metrics[name] = split_metrics(splits[name], split.labels, task.kind)
        files.save_npz(path, splits)
        files.write_text(path.with_suffix(".json"), json.dumps({"teacher": teacher_dir, "data": task.fingerprint,
                                                                "metrics": metrics}, indent=1))
        del model
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


def cached_extra_logits(config: StudyConfig, name: str, split, content: str, teacher_dir: str,
                        teacher_identity: str, runtime: Runtime) -> np.ndarray:
    """The teacher's logits for text it alone labels (transfer text, augmented copies), computed once and kept on
    disk as float16, memory-mapped: a worker reads only the rows it trains on, however large the set (1M rows x 151
    labels is 0.3 GB on disk and next to nothing resident). float16 keeps ~3 significant digits of a logit, far
    finer than what a temperature-softened KL target needs. `content` names the rows (data, settings, seed)."""
    key = hashlib.sha256(json.dumps([teacher_identity, content, config.data.max_length,
                                     "cuda" if runtime.is_cuda else "cpu", runtime.amp]).encode()).hexdigest()[:24]
    path = config.cache_dir / "logits" / f"{name}-{key}.npy"
    found = _read_extra(path, len(split))
    if found is not None:
        return found
    with files.lock(path):
        found = _read_extra(path, len(split))
        if found is not None:
            return found
        log.info("teacher logits: labelling %d %s rows once; cached in %s", len(split), name, path)
        model, tokenizer = load_model(teacher_dir, task=None, revision=None if config.teacher.base
                                      else config.teacher.revision)
        model.to(runtime.device)
        enc = encode(split, tokenizer, config.data.max_length, config.cache_dir, f"{content}:{name}")
        with files.atomic_file(path) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16,
                                            shape=(len(split), int(model.config.num_labels)))
            for start in range(0, len(split), EXTRA_CHUNK):
                stop = min(start + EXTRA_CHUNK, len(split))
                with timing.phase("teacher logits"):
                    out[start:stop] = compute_logits(model, enc.rows(start, stop), runtime,
                                                     config.teacher.inference_batch_size)
            out.flush()
            del out
            files.seal(tmp, path)
        del model
    return _read_extra(path, len(split), strict=True)


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
