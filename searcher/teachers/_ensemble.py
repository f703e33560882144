"""Several teachers as one: the target is the weighted mean of their logits, or of their probabilities.

Each member computes its logits once (cached as any teacher's); the ensemble's target is formed once per study from
those files, never per step, so a trial against k teachers costs what a trial against one does. Mean of logits is
TextBrewer's MultiTeacherDistiller; mean of probabilities is the classic ensemble (its log is the target, so softmax
at temperature 1 gives back the mean probabilities). A regression ensemble averages the scores.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from searcher import files, tasks
from searcher.data.loading import Split, Task
from searcher.errors import TeacherError
from searcher.teachers.logits import TeacherLogits, split_metrics
from searcher.teachers._base import Teacher, TeacherCompute

def combine(arrays: list[np.ndarray], weights: np.ndarray, how: str, kind) -> np.ndarray:
    """The ensemble's logits from its members' (same shape), float32; `weights` sum to 1. How "probabilities" are
    averaged is the task kind's (a TaskKind or its name: searcher.tasks)."""
    stack = np.stack([np.asarray(a, dtype=np.float32) for a in arrays])
    w = np.asarray(weights, dtype=np.float32).reshape(-1, *([1] * (stack.ndim - 1)))
    return (tasks.kind(kind) if isinstance(kind, str) else kind).combine(stack, w, how)


class Ensemble(Teacher):
    type = "ensemble"

    def __init__(self, members: list[Teacher], weights: list[float], how: str, layer_wise: Optional[str],
                 compute: TeacherCompute, searched: Optional[tuple[float, float]] = None):
        super().__init__("ensemble", compute)
        self._members = members
        total = float(sum(weights))
        self.weights = np.asarray([w / total for w in weights], dtype=np.float64)
        self.how = how
        self.layer_wise = layer_wise
        self.searched = searched  # each trial searches the weights in this range: `weights` are the study's default
        self._task: Optional[Task] = None
        self._each: dict[str, list[np.ndarray]] = {}  # split or extra name -> the members' outputs, for reweighting

    @property
    def members(self) -> list[Teacher]:
        return list(self._members)

    @property
    def primary(self) -> Optional[Teacher]:
        if self.layer_wise is not None:
            return next(m for m in self._members if m.name == self.layer_wise)
        return next((m for m in self._members if m.type == "classifier"), None)

    def model_config(self):
        return self.primary.model_config() if self.primary is not None else self._members[0].model_config()

    def label_order(self) -> Optional[list[str]]:
        """The first member's real label names; the others are mapped to them by name (searcher.teachers)."""
        return next((o for o in (m.label_order() for m in self._members) if o is not None), None)

    def check(self, task: Task) -> None:
        for m in self._members:
            m.check(task)

    def ready(self, task: Task) -> None:
        self._task = task
        for m in self._members:
            m.ready(task)
        self.identity = files.cache_key(
            [[m.identity for m in self._members], [round(float(w), 12) for w in self.weights], self.how], 20)

    def logits(self, task: Task) -> TeacherLogits:
        each = [m.logits(task) for m in self._members]
        self._each.update({name: [e.splits[name] for e in each] for name in task.splits()})
        splits = {name: combine(self._each[name], self.weights, self.how, task.kind) for name in task.splits()}
        for name, arrays in splits.items():
            if arrays.shape != each[0].splits[name].shape:
                raise TeacherError(f"the ensemble's teachers give {name} outputs of different shapes")
        self.metrics = {name: split_metrics(splits[name], split.labels, task.kind)
                        for name, split in task.splits().items() if name != "train"}
        return TeacherLogits(splits, self.metrics)

    def extra_logits(self, name: str, split: Split, content: str) -> np.ndarray:
        arrays = [m.extra_logits(name, split, content) for m in self._members]
        self._each[name] = arrays
        return combine(arrays, self.weights, self.how, self._task.kind).astype(np.float16)

    def reweighted(self, name: str, weights) -> np.ndarray:
        """The target of one split (or teacher-labelled extra) under other weights, e.g. a trial's searched ones:
        formed from the members' cached outputs, once per trial; extras stay float16 as `extra_logits` gives them."""
        arrays = self._each[name]
        out = combine(arrays, np.asarray(weights, dtype=np.float64) / float(sum(weights)), self.how, self._task.kind)
        return out.astype(arrays[0].dtype) if arrays[0].dtype == np.float16 else out

    def describe(self) -> dict:
        members = [m.describe() for m in self._members]
        for info, w in zip(members, self.weights):
            info["weight"] = round(float(w), 6)
        primary = self.primary
        return {
            "name": self.name,
            "type": self.type,
            "combine": self.how,
            **({"search_weights": list(self.searched)} if self.searched else {}),
            "layer_wise": primary.name if primary is not None else None,
            "members": members,
            "metrics": self.metrics,
            # what a single teacher's record says, for readers that know one teacher: the primary's facts
            **{k: v for k, v in (members[self._members.index(primary)] if primary is not None else members[0]).items()
               if k not in ("name", "type", "metrics", "weight")},
            "params": int(sum(m.get("params", 0) for m in members)),
            "size_mb": round(sum(m.get("size_mb", 0) for m in members), 1),
        }

    def release(self) -> None:
        for m in self._members:
            m.release()
