"""A sequence classifier as teacher: a fine-tuned model (`model`), or a base fine-tuned once (`base` + `fine_tune`).

Its logits come from its own tokenization of each example, so a student of another family or tokenizer learns from
it per example (logit KD needs only the same rows in the same order).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from searcher.teachers import loading as teacher_loading, logits

from searcher.train import models
from searcher.config import FineTuneConfig, TeacherMember
from searcher.errors import ConfigError
from searcher.data.loading import Split, Task
from searcher.teachers.logits import TeacherLogits
from searcher.teachers._base import Teacher, TeacherCompute
from searcher.data.tokens import encode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassifierSettings:
    """A classifier teacher's keys: how searcher fine-tunes a `base` once ([teacher.fine_tune]) and with what seed."""

    fine_tune: FineTuneConfig = field(default_factory=FineTuneConfig, metadata={"parse": "table"})
    seed: Optional[int] = None  # the fine-tune's seed (default: [study] seed)


class ClassifierTeacher(Teacher):
    type = "classifier"
    title = "classifier"
    selected_by = "model = a fine-tuned classifier, or base = a model to fine-tune"
    Settings = ClassifierSettings
    has_layers = True

    @classmethod
    def check_settings(cls, member, where: str, config) -> None:
        ft = member.fine_tune
        if ft.epochs < 1 or ft.batch_size < 1 or ft.learning_rate <= 0 or not 0 <= ft.warmup_ratio < 1 \
                or ft.weight_decay < 0:
            raise ConfigError(f"{where.replace('[teacher]', '[teacher.fine_tune]')} fine_tune needs epochs >= 1, "
                              f"batch_size >= 1, learning_rate > 0, weight_decay >= 0 and 0 <= warmup_ratio < 1")
        if member.seed is not None and member.model:
            raise ConfigError(f"{where} seed is the seed of a fine-tune; it needs base = ..., not model = ...")

    @classmethod
    def from_member(cls, member, source, compute, config, several):
        seed = config.study.seed if member.seed is None else member.seed
        return cls(member, source, seed, compute, map_labels=several)

    def __init__(self, member: TeacherMember, source: str, seed: int, compute: TeacherCompute, map_labels: bool = False):
        super().__init__(member.name, compute)
        self.member = member
        self.source = source  # a local folder or a Hub id (the fine-tuned model, or the base)
        self.seed = seed  # of the fine-tune, when there is one
        self.map_labels = map_labels  # an ensemble member whose labels are in another order is mapped by name
        self.directory: Optional[str] = None  # the model it teaches with, once `ready`
        self._config = None
        self._loaded: Optional[tuple] = None
        self._columns: Optional[np.ndarray] = None  # its output columns in the task's label order

    @property
    def fine_tuned(self) -> bool:
        return bool(self.member.base)

    @property
    def revision(self) -> Optional[str]:
        return self.member.revision

    def model_config(self):
        if self._config is None:
            where = f"{'[[teachers]]' if self.map_labels else '[teacher]'} model/base"
            self._config = teacher_loading.load_config(self.source, self.revision, where)
        return self._config

    def label_order(self) -> Optional[list[str]]:
        return None if self.fine_tuned else teacher_loading.label_names(self.model_config())

    @property
    def output_order(self) -> Optional[np.ndarray]:
        """Which of its outputs is each of the task's labels (None: its outputs are in the task's order)."""
        return self._columns

    def check(self, task: Task) -> None:
        if self.fine_tuned:
            return  # a base gets a fresh head with the data's labels
        self._map_numbered(task)
        names = teacher_loading.label_names(self.model_config())
        if self.map_labels and names is not None and set(names) == set(task.label_names) \
                and task.kind.exclusive_classes:
            self._columns = np.array([names.index(n) for n in task.label_names])  # mapped by label name
            names = list(task.label_names)
            cfg = self.model_config()
            cfg = type(cfg).from_dict({**cfg.to_dict(), "id2label": dict(enumerate(names))})
            return teacher_loading.check_labels(self._called, cfg, task)
        teacher_loading.check_labels(self._called, self.model_config(), task)

    def _map_numbered(self, task: Task) -> None:
        """A teacher that numbers its outputs in another order than they come ("1", "0") says which output is which
        class: when the numbers are the data's label names, its outputs are mapped to them by name; otherwise
        they are used by position, which one log line says."""
        numbers = teacher_loading.numbered_labels(self.model_config())
        if numbers is None or not task.kind.exclusive_classes or len(numbers) != task.num_labels:
            return
        shown = ", ".join(numbers)
        if sorted(numbers) == sorted(task.label_names):
            self._columns = np.array([numbers.index(n) for n in task.label_names])
            log.info("teacher %r: its outputs are named %s (numbers in another order than its outputs): mapped to "
                     "the data's labels %s by name", self.name, shown, ", ".join(task.label_names))
        else:
            log.info("teacher %r: its outputs are named %s (numbers in another order than its outputs), which are not "
                     "the data's labels %s: used by position; set [data] label_names if that is wrong", self.name,
                     shown, ", ".join(task.label_names))

    @property
    def _called(self) -> str:
        """How errors name it: its source when it teaches alone (as the study file gives it), else its name."""
        return self.name if self.map_labels else self.member.model

    def ready(self, task: Task) -> None:
        if self.fine_tuned:
            from searcher.teachers import finetune  # the training loop (torch): only when a base is fine-tuned

            base_identity = teacher_loading.identity(self.source, self.model_config(), self.revision)
            self.directory = finetune.fine_tuned(self.source, self.revision, base_identity, self.member.fine_tune,
                                                 self.seed, task, self.compute)
            self.identity = teacher_loading.identity(self.directory, self.model_config(), None)
        else:
            self.directory = self.source
            self.identity = teacher_loading.identity(self.directory, self.model_config(), self.revision)
        self._task = task

    def model(self):
        """(model, tokenizer), loaded on first use."""
        if self._loaded is None:
            self._loaded = teacher_loading.load_model(self.directory, self._task, None if self.fine_tuned else self.revision)
        return self._loaded

    def release(self) -> None:
        self._loaded = None

    def _encode(self, split: Split, key: str):
        model, tokenizer = self.model()
        model.to(self.compute.runtime.device)
        return model, encode(split, tokenizer, self.compute.max_length, self.compute.cache_dir, key)

    def _label(self, model, enc) -> np.ndarray:
        out = logits.compute_logits(model, enc, self.compute.runtime, self.compute.inference_batch_size)
        return out if self._columns is None else out[:, self._columns]

    def logits(self, task: Task) -> TeacherLogits:
        path = self.compute.logits_path(self.identity, task.fingerprint)
        found = logits.cached_logits(path, task, lambda name, split: self._label(
            *self._encode(split, f"{task.fingerprint}:{name}")), self.directory)
        self.metrics = found.metrics
        return found

    def extra_logits(self, name: str, split: Split, content: str) -> np.ndarray:
        path = self.compute.extra_path(name, self.identity, content)
        encoded = []  # tokenized once, on the first chunk the cache needs

        def label(start: int, stop: int) -> np.ndarray:
            if not encoded:
                encoded.extend(self._encode(split, f"{content}:{name}"))
            model, enc = encoded
            return self._label(model, enc.rows(start, stop))

        return logits.cached_extra_logits(path, name, len(split), self._task.num_labels, label)

    def describe(self) -> dict:
        model, _ = self.model()
        info = {
            "name": self.name,
            "type": self.type,
            "model": self.member.model or None,
            "base": self.member.base or None,
            "fine_tuned_by_searcher": self.fine_tuned,
            **({"seed": self.seed} if self.fine_tuned else {}),
            "path": self.directory,
            **models.shape(model),
            "metrics": self.metrics,
        }
        folder = Path(self.directory)
        size = sum(f.stat().st_size for f in folder.glob("*.safetensors")) if folder.is_dir() else 0
        info["size_mb"] = round(size / 1e6, 1) if size else round(info["params"] * 4 / 1e6, 1)
        return info
