"""The teacher seam: what a study asks of "the teacher", whatever it is (a classifier, a causal LM, an ensemble).

A study builds its teacher once (searcher.teachers.build, from the study file's teachers) and every stage takes this
object: preparation checks it against the data and has it compute its logits once (cached), transfer text and
augmented copies are labelled by it, layer-wise losses and teacher-initialised students read the classifier it names
(`primary`), and records and cards describe it. One implementation per module, as optuna's samplers are laid out.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Optional

import numpy as np

from searcher.teachers import logits
from searcher.data.loading import Split, Task
from searcher.train.runtime import Runtime
from searcher.teachers.logits import TeacherLogits


@dataclass(frozen=True)
class TeacherCompute:
    """What every teacher computes with: the study's cache, its max_length, the inference batch and the device."""

    cache_dir: Path
    max_length: int
    inference_batch_size: int
    runtime: Runtime

    def logits_path(self, identity: str, fingerprint: str, *more) -> Path:
        """Where a teacher's logits of the task's splits are cached (keys as they were before teacher objects)."""
        return logits.logits_path(self.cache_dir, [identity, fingerprint, self.max_length,
                                                    logits.device_kind(self.runtime), self.runtime.amp, *more])

    def extra_path(self, name: str, identity: str, content: str) -> Path:
        """Where a teacher's logits of rows only it labels are cached."""
        return logits.extra_path(self.cache_dir, name, [identity, content, self.max_length,
                                                         "cuda" if self.runtime.is_cuda else "cpu", self.runtime.amp])


Where = TeacherCompute  # its name before issue 28 (a "where" is a place in a study file everywhere else)


@dataclass(frozen=True)
class Settings:
    """A teacher kind's own keys in a [teacher] or [[teachers]] table (none by default)."""


class Teacher(abc.ABC):
    """A teacher of the study: its identity (content hash), its label order, and the targets the losses ask for.

    A kind of teacher (registered in searcher.teachers.TYPES) also declares what its study-file table holds beside the
    keys every kind has (name, model, base, revision, weight): `Settings`, a frozen dataclass checked when the
    study file is read; `selects(table)`, whether a table without `type = "..."` is of this kind; `check_settings`,
    its rules; and `from_member`, how it is built from its table."""

    name: str
    type: ClassVar[str]  # "classifier", "causal_lm" or "ensemble": what the records and the card say
    title: ClassVar[str] = ""  # how messages name the kind ("causal LM")
    selected_by: ClassVar[str] = ""  # what makes a table of this kind, for messages ("prompt and verbalizers")
    Settings: ClassVar[type] = Settings
    has_layers: ClassVar[bool] = False  # a classifier student can match its layers and use its tokenizer

    @classmethod
    def selects(cls, table: dict) -> bool:
        """Whether a study-file table that names no `type` is a teacher of this kind (by its keys)."""
        return False

    @classmethod
    def teaches(cls, kind) -> bool:
        """Whether it can teach a task of this kind (a searcher.tasks.TaskKind class or instance)."""
        return True

    @classmethod
    def check_settings(cls, member, where: str, config) -> None:
        """Raise ConfigError (one line, the fix) when the member's settings cannot work in this study. Called when
        the study file is read (`where` names the table: "path: [teacher]")."""

    @classmethod
    def from_member(cls, member, source: str, compute: "TeacherCompute", config, several: bool) -> "Teacher":
        """The teacher of one [teacher]/[[teachers]] table (its model at `source`); `several`: in an ensemble."""
        raise NotImplementedError

    def __init__(self, name: str, compute: TeacherCompute):
        self.name = name
        self.compute = compute
        self.identity: Optional[str] = None  # known once `ready`
        self.metrics: dict = {}  # split name -> its scores, once `logits` ran

    @property
    def members(self) -> list["Teacher"]:
        """The single teachers it is made of (itself, unless it is an ensemble)."""
        return [self]

    @property
    def primary(self) -> Optional["Teacher"]:
        """The classifier whose layers and tokenizer layer-wise losses and init "teacher"/"random" students use."""
        return self if self.has_layers else None

    # before any work: small downloads at most

    @abc.abstractmethod
    def label_order(self) -> Optional[list[str]]:
        """The label names, in its output order, that the data must follow (None: it adopts the data's)."""

    @abc.abstractmethod
    def model_config(self):
        """Its transformers config (loaded once)."""

    @abc.abstractmethod
    def check(self, task: Task) -> None:
        """One TeacherError line when it cannot teach this task (labels, head, task kind)."""

    # once per study

    @abc.abstractmethod
    def ready(self, task: Task) -> None:
        """Make it usable (fine-tune it once if asked) and set `identity`."""

    @abc.abstractmethod
    def logits(self, task: Task) -> TeacherLogits:
        """Its outputs for every split, as logits of the task's labels in the task's order (computed once, cached),
        and its metrics on the evaluation splits."""

    @abc.abstractmethod
    def extra_logits(self, name: str, split: Split, content: str) -> np.ndarray:
        """Its logits for rows only it labels (transfer text, augmented copies), float16, cached; `content` names
        the rows."""

    @abc.abstractmethod
    def describe(self) -> dict:
        """JSON-safe facts for the records and the card: source, size, metrics, how it makes its logits."""

    def release(self) -> None:
        """Drop its model from memory (reloaded if asked again)."""
