"""The distillation-loss seam: what one loss declares and the one method it must implement.

A loss (one class per module, registered in searcher.losses like optuna's samplers) declares:
- `name`, `title`: how the study file, the records and the card name it;
- `hyperparams`: the registry entries it adds (its weight), searchable, checked, carded and imported like the rest;
- `Settings`: a frozen dataclass of its `[distill.NAME]` options (the layer map among them), checked when the study
  file is read;
- `reads`, `needs(pairs)`: which outputs of the student and of the teacher it reads (hidden states, attention Q/K/V
  of which layers; logits);
- `stage`: which stage of TinyBERT's schedule trains it, "layers" (the first epochs) or "logits" (the rest);
and implements `terms(student, teacher, batch)`: its named loss terms, each SUMMED over the examples of the batch
(the loop divides by the size of the whole effective batch, so micro-batches add up to exactly one big batch).

This module must not import torch at import time: the study file's checks read the declarations (searcher.config),
and `searcher --help` stays instant. Implementations import torch inside their methods.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Optional, Union

from searcher.dimensions import Hyperparam
from searcher.tasks import UNLABELED  # noqa: F401 - the label of a row only the teacher labels: no label term

if TYPE_CHECKING:
    import torch

LayerMap = Union[str, tuple[tuple[int, int], ...]]  # "uniform" | "last" | ((student, teacher), ...); 0 = embeddings


@dataclass(frozen=True)
class Side:
    """Outputs one model must produce for a loss: hidden states of these layers (0 = the embeddings) and the
    self-attention queries, keys and values of these layers (1..L)."""

    hidden: frozenset = frozenset()
    attention: frozenset = frozenset()

    def __or__(self, other: "Side") -> "Side":
        return Side(self.hidden | other.hidden, self.attention | other.attention)

    @property
    def empty(self) -> bool:
        return not self.hidden and not self.attention


@dataclass(frozen=True)
class Needs:
    """What a loss reads: the teacher's logits, and intermediate outputs of each model."""

    logits: bool = False
    student: Side = Side()
    teacher: Side = Side()

    def __or__(self, other: "Needs") -> "Needs":
        return Needs(self.logits or other.logits, self.student | other.student, self.teacher | other.teacher)


@dataclass
class Outputs:
    """One model's outputs on a batch, as a loss reads them. `hidden[l]` is (B, W, H); `attention[l]` is the
    layer's (queries, keys, values), each (B, W, H) with the heads side by side; `mask` is (B, W), 1 on tokens.
    The teacher's come from its cached states or from the teacher running beside the student
    (searcher.teachers.hidden: CachedTeacherStates, OnlineTeacherStates)."""

    logits: Optional["torch.Tensor"]
    mask: Optional["torch.Tensor"] = None
    hidden: dict = field(default_factory=dict)
    attention: dict = field(default_factory=dict)
    heads: int = 1


@dataclass
class Batch:
    """What a loss may know about the batch besides the two models' outputs."""

    labels: "torch.Tensor"  # as the task kind has them; rows only the teacher labels are marked (-1 or NaN)
    hyperparams: Any  # searcher.hyperparams.Hyperparams of the trial
    task: Any = None  # searcher.tasks.TaskKind (default: single-label classification)


@dataclass(frozen=True)
class Settings:
    """A loss's [distill.NAME] options (none for the logit loss)."""


@dataclass(frozen=True)
class LayerSettings(Settings):
    """The options of a layer-wise loss start with its layer map; a loss adds its own fields."""

    layer_map: LayerMap = field(default="uniform", metadata={"parse": "layer_map"})


class DistillationLoss(abc.ABC):
    name: ClassVar[str]
    title: ClassVar[str]  # what the card calls it, with the paper it comes from
    hyperparams: ClassVar[tuple[Hyperparam, ...]] = ()
    Settings: ClassVar[type] = Settings
    token_level: ClassVar[bool] = True  # compares token by token: the student must use the teacher's tokenizer
    embeddings: ClassVar[bool] = False  # its uniform map starts with the embeddings (0 <- 0)
    reads: ClassVar[str] = "hidden"  # "hidden" | "attention" | "logits": which outputs its layer pairs are of
    # which stage of TinyBERT's schedule trains it ([distill] intermediate_epochs): "layers" (intermediate outputs,
    # the first epochs) or "logits" (the predictions, the rest); without a schedule every loss trains every epoch
    stage: ClassVar[str] = "layers"

    def __init__(self, settings: Optional[Any] = None):
        self.settings = settings if settings is not None else self.Settings()
        self._modules: list = []

    # --- per trial -------------------------------------------------------------------------------------------

    def pairs(self, student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
        """(student layer, teacher layer) pairs this loss matches, by its layer map."""
        from searcher.losses.layers import pairs

        if self.reads == "logits":
            return []
        return pairs(getattr(self.settings, "layer_map", "uniform"), student_layers, teacher_layers,
                     embeddings=self.embeddings,
                     lowest=0 if self.reads == "hidden" else 1)

    def needs(self, pairs: list[tuple[int, int]]) -> Needs:
        if self.reads == "logits":
            return Needs(logits=True)
        layers_s, layers_t = frozenset(s for s, _ in pairs), frozenset(t for _, t in pairs)
        side = (lambda ls: Side(hidden=ls)) if self.reads == "hidden" else (lambda ls: Side(attention=ls))
        return Needs(student=side(layers_s), teacher=side(layers_t))

    def setup(self, student_config, teacher_config, pairs: list[tuple[int, int]], device: str) -> list:
        """Build what this loss trains beside the student (e.g. a projection) for one trial; returns those
        torch modules, which the optimizer updates and nothing saves (they are not part of the student)."""
        self.pairs_in_use = pairs
        self._modules = []
        return self._modules

    @property
    def modules(self) -> list:
        return self._modules

    def fitted(self, teacher_config, student_configs: list) -> tuple[Any, Optional[str]]:
        """Its settings with the defaults that depend on the study's models chosen to fit the teacher and every
        student the study can build (the same for all trials), and a line for the log saying what was chosen (None:
        nothing was). Called once, before the study starts and before `check`."""
        return self.settings, None

    def check(self, student_config, teacher_config) -> None:
        """Raise ConfigError (one line, the fix) when this loss cannot compare such a student with such a teacher
        (head counts, sizes). Called for every student the study can build, before the study starts."""

    # --- the loss --------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def terms(self, student: Outputs, teacher: Outputs, batch: Batch) -> dict[str, "torch.Tensor"]:
        """Named loss terms, weights applied, each summed over the batch's examples (a per-example loss summed)."""

    # --- what records and cards say --------------------------------------------------------------------------

    def weight(self, hp):
        """Its weight for this trial: a float, or a tensor of one value per member in a cohort."""
        if not self.hyperparams:
            return 1.0
        value = getattr(hp, self.hyperparams[0].name)
        return value if hasattr(value, "dim") else float(value)

    def formula(self, task=None) -> str:
        """What it computes, for the card (`task`: the study's TaskKind, for losses whose formula depends on it)."""
        return self.title

    def weighted_formula(self, task=None) -> str:
        """Its formula as a term of the sum, times its weight by the parameter's own name (as the records have it)."""
        formula = self.formula(task)
        return f"{self.hyperparams[0].name} * {formula}" if self.hyperparams else formula

    def describe(self, hp, pairs: Optional[list[tuple[int, int]]] = None) -> dict:
        """What ran, for the trial's records and the card: plain data."""
        out = {"loss": self.name, "title": self.title, "formula": self.formula(),
               "settings": {k: _plain(v) for k, v in dataclasses.asdict(self.settings).items()}}
        if self.hyperparams:
            out["weight"] = self.weight(hp)
        if pairs:
            out["layers"] = [list(p) for p in pairs]
        return out


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
