"""Teacher stage: load the fine-tuned teacher (or fine-tune one once from a base), and cache its logits.

The teacher's logits are computed once per (teacher, data, max_length) and stored on disk; every trial of every run
trains against that file. Calling the teacher at each step of each trial, as the textbook DistillationTrainer does,
costs ~18x a small student's training step (../shared/STACK.md). Building is guarded by a file lock and written
atomically, so workers that start together build it once and never read half a file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from searcher.config import StudyConfig
from searcher.data import Task, atomic_save_npz, atomic_write_text, encode, locate
from searcher.errors import TeacherError, first_line
from searcher.runtime import Runtime

log = logging.getLogger(__name__)

GENERIC_LABEL = re.compile(r"^(LABEL_)?\d+$")


@dataclass(frozen=True)
class TeacherLogits:
    """Cached teacher outputs for each split (float32, shape (N, num_labels)) and the teacher's metrics."""

    splits: dict  # split name -> np.ndarray
    metrics: dict  # split name -> {loss, accuracy, f1, precision, recall}
    built: bool  # True when this process computed them (False: read from the cache)


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
    """A fine-tuned teacher must predict exactly the data's labels, in the same order."""
    if config.teacher.base:
        return  # a base gets a fresh head with the data's labels
    n = getattr(teacher_config, "num_labels", None)
    if n != task.num_labels:
        raise TeacherError(f"teacher {config.teacher.model!r} predicts {n} labels but the data has "
                           f"{task.num_labels} ({', '.join(task.label_names[:6])}{'...' if task.num_labels > 6 else ''}); "
                           f"use a teacher fine-tuned on this task, or set [teacher] base = ... to fine-tune one")
    names = label_names(teacher_config)
    if names is not None and set(names) != set(task.label_names):
        raise TeacherError(f"teacher {config.teacher.model!r} predicts the labels {names[:6]} but the data has "
                           f"{list(task.label_names)[:6]}; set [data] label_names to the teacher's names in its "
                           f"order, or use a teacher fine-tuned on this data")
    if names is not None and names != list(task.label_names):
        raise TeacherError(f"teacher labels {names} are in a different order than the data's "
                           f"{list(task.label_names)}; set [data] label_names = {names}")


def identity(path_or_id: str, teacher_config=None, revision: Optional[str] = None) -> str:
    """A short key that changes whenever the teacher's weights or config change."""
    p = Path(path_or_id)
    h = hashlib.sha256()
    if p.is_dir():
        for f in sorted(p.iterdir()):
            if f.name == "config.json" or f.name.startswith("tokenizer") or f.name == "vocab.txt":
                h.update(f.name.encode() + f.read_bytes())
            elif f.suffix in (".safetensors", ".bin"):
                st = f.stat()
                h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
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
        kwargs = {"num_labels": task.num_labels, "id2label": task.id2label, "label2id": task.label2id}
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


def _lock(path: Path):
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".lock")


def prepared_dir(config: StudyConfig, task: Task, runtime: Runtime, teacher_config=None) -> str:
    """The teacher to distill from: the configured classifier, or a fine-tuned copy of `base`, made once and cached."""
    if config.teacher.model:
        return source(config)
    base = source(config)
    ft = config.teacher.fine_tune
    key = hashlib.sha256(json.dumps({
        "base": identity(base, teacher_config, config.teacher.revision), "data": task.fingerprint,
        "max_length": config.data.max_length, "fine_tune": [ft.epochs, ft.learning_rate, ft.batch_size,
                                                           ft.weight_decay, ft.warmup_ratio],
        "seed": config.study.seed,
    }).encode()).hexdigest()[:20]
    out = config.cache_dir / "teachers" / key
    with _lock(out):
        if (out / "searcher_teacher.json").is_file():
            log.info("teacher: reusing fine-tuned %s", out)
            return str(out)
        log.info("teacher: fine-tuning %s once (%d epochs); cached in %s", base, ft.epochs, out)
        _fine_tune(config, task, runtime, base, out)
    return str(out)


def _fine_tune(config: StudyConfig, task: Task, runtime: Runtime, base: str, out: Path) -> None:
    from searcher import distill

    model, tokenizer = load_model(base, task, config.teacher.revision, new_head=True)
    train = encode(task.train, tokenizer, config.data.max_length, config.cache_dir, f"{task.fingerprint}:train")
    validation = encode(task.validation, tokenizer, config.data.max_length, config.cache_dir,
                        f"{task.fingerprint}:validation")
    ft = config.teacher.fine_tune
    hp = distill.Hyperparams(learning_rate=ft.learning_rate, batch_size=ft.batch_size, temperature=1.0, alpha=1.0,
                             epochs=ft.epochs, weight_decay=ft.weight_decay, warmup_ratio=ft.warmup_ratio,
                             seed=config.study.seed)

    def report(r: distill.EpochResult) -> None:
        log.info("teacher fine-tune epoch %d: train loss %.4f, validation accuracy %.4f (%.0fs)",
                 r.epoch, r.train_loss, r.metrics["accuracy"], r.seconds)

    history = distill.train(model, train, None, validation, None, hp, runtime, on_epoch=report)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=out.name + ".tmp"))
    try:
        model.to("cpu").save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "searcher_teacher.json").write_text(json.dumps({
            "base": base, "fine_tune": vars(hp), "history": [vars(r) for r in history],
        }, indent=1))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def compute_logits(model, enc, runtime: Runtime, batch_size: int) -> np.ndarray:
    """One teacher forward pass over a split (tests count calls to this function)."""
    from searcher.distill import logits_of

    return logits_of(model, enc, runtime, batch_size)


def cached_logits(config: StudyConfig, task: Task, teacher_dir: str, runtime: Runtime,
                  teacher_config=None) -> TeacherLogits:
    """The teacher's logits for every split: read from the cache, or computed once under a lock."""
    revision = None if config.teacher.base else config.teacher.revision
    key = hashlib.sha256(
        f"{identity(teacher_dir, teacher_config, revision)}|{task.fingerprint}|{config.data.max_length}".encode()
    ).hexdigest()[:24]
    path = config.cache_dir / "logits" / f"{key}.npz"
    meta_path = path.with_suffix(".json")

    def read() -> Optional[TeacherLogits]:
        if not (path.is_file() and meta_path.is_file()):
            return None
        try:
            with np.load(path) as z:
                splits = {name: z[name] for name in z.files}
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError, KeyError):
            log.warning("teacher logits cache %s is unreadable; rebuilding it", path)
            return None
        if set(splits) != set(task.splits()) or any(len(splits[k]) != len(v) for k, v in task.splits().items()):
            return None
        return TeacherLogits(splits, meta["metrics"], built=False)

    found = read()
    if found is not None:
        return found
    with _lock(path):
        found = read()  # another worker may have built it while we waited for the lock
        if found is not None:
            return found
        log.info("teacher logits: computing once for %s (%s examples); cached in %s", teacher_dir,
                 sum(len(s) for s in task.splits().values()), path)
        model, tokenizer = load_model(teacher_dir, task, revision)
        model.to(runtime.device)
        splits, metrics = {}, {}
        for name, split in task.splits().items():
            enc = encode(split, tokenizer, config.data.max_length, config.cache_dir, f"{task.fingerprint}:{name}")
            splits[name] = compute_logits(model, enc, runtime, config.teacher.inference_batch_size)
            if name != "train":
                metrics[name] = split_metrics(splits[name], split.labels)
        atomic_save_npz(path, splits)
        atomic_write_text(meta_path, json.dumps({"teacher": teacher_dir, "data": task.fingerprint,
                                                 "metrics": metrics}, indent=1))
        del model
        return TeacherLogits(splits, metrics, built=True)


def split_metrics(logits: np.ndarray, labels: np.ndarray) -> dict:
    import torch
    import torch.nn.functional as F

    from searcher.metrics import classification_metrics

    loss = float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)))
    return {"loss": loss, **classification_metrics(logits.argmax(axis=-1), labels)}
