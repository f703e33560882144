"""The hyperparameters of a trial, each declared once: name, type, default, allowed values, how it is shown.

Everything else reads this registry: the study file's [search] section and its checks (searcher.config), the Optuna
search space (searcher.space), the plan a trial trains with (`Hyperparams`, consumed by searcher.distill and
searcher.student), the card's hyperparameter lines (searcher.card), the leaderboard and the progress line.

Adding a hyperparameter is one `Hyperparam(...)` entry below plus its use in the training loop. Order matters only
for Optuna: parameters are suggested in this order, so new entries go at the end to keep earlier studies' draws.
This module must not import torch, transformers or optuna (the config and `searcher --help` stay instant).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

MAX_BATCH_SIZE = 1024
MAX_AUGMENT = 32  # copies per sentence: the teacher labels them all once, so the cache grows with the largest
INF = math.inf


# ---------------------------------------------------------------------------------------------------------------
# A value is either fixed or searched. Only searcher.space turns these into trial.suggest_* calls.


@dataclass(frozen=True)
class Fixed:
    value: Any


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    log: bool = False
    step: int = 1


@dataclass(frozen=True)
class Choices:
    values: tuple


Dimension = Union[Fixed, FloatRange, IntRange, Choices]


def extent(dim: Dimension) -> tuple[Any, Any]:
    """The smallest and largest value a dimension can take."""
    if isinstance(dim, Fixed):
        return dim.value, dim.value
    if isinstance(dim, Choices):
        return min(dim.values), max(dim.values)
    return dim.low, dim.high


def describe(dim: Dimension) -> str:
    """How a dimension reads in records and cards: `[1e-05, 0.001] (log)`, `[16, 32]`, `3`."""
    if isinstance(dim, Choices):
        return str(list(dim.values))
    if isinstance(dim, (FloatRange, IntRange)):
        return f"[{dim.low}, {dim.high}]" + (" (log)" if dim.log else "")
    return repr(dim.value)


def contains(dim: Dimension, value: Any) -> bool:
    """Whether `value` is one the dimension can take (for enqueued and imported trials)."""
    if isinstance(dim, Fixed):
        return value == dim.value
    if isinstance(dim, Choices):
        return value in dim.values
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    if isinstance(dim, IntRange):
        return float(value).is_integer() and dim.low <= value <= dim.high and (int(value) - dim.low) % dim.step == 0
    return dim.low <= value <= dim.high


LOG2 = "_log2"  # suffix of a power-of-two choice that searcher.space asks of Optuna as its exponent (GP, CMA-ES)


def user_params(params: dict) -> dict:
    """Optuna's parameters under the names and values of the study file, for [[enqueue]] lines and cards:
    `batch_size_log2 = 5` is `batch_size = 32` (searcher.space's numeric encoding); others are unchanged."""
    out = {}
    for name, value in params.items():
        if name.endswith(LOG2) and isinstance(value, int) and not isinstance(value, bool):
            out[name[:-len(LOG2)]] = 2 ** value
        else:
            out[name] = value
    return out


# ---------------------------------------------------------------------------------------------------------------
# The registry


CardSlot = Literal["lead", "tail", "end", "distillation"]


@dataclass(frozen=True)
class Hyperparam:
    name: str
    kind: type  # float or int
    default: Dimension  # when the study file does not set it
    low: float  # allowed values lie between low and high ...
    high: float
    open_ends: tuple[str, ...] = ()  # ... excluding the ends named here ("low", "high")
    log: bool = False  # a [low, high] range in the study file is searched on a log scale
    list_means: Literal["range", "choices"] = "range"  # what a list in the study file means
    searchable: bool = True  # False: the study file may only fix it
    help: str = ""  # what it does, for error messages and the README
    card: Optional[str] = None  # its name in the card (the Trainer's card names where one exists); None: not shown
    card_slot: CardSlot = "tail"  # where: before the batch lines, after the scheduler, last, or under Distillation
    card_exact: bool = False  # print the exact float (repr), as the Trainer's card does for the learning rate
    card_always: bool = True  # False: shown only when the value differs from the default
    card_rank: int = 0  # order within its card slot (then registry order)
    column: Optional[str] = None  # its leaderboard/progress column; searched ones without a column show by name
    fmt: str = "g"  # format spec of that column

    def allowed(self) -> str:
        lo = "(" if "low" in self.open_ends else "["
        hi = ")" if "high" in self.open_ends or self.high == INF else "]"
        return f"{lo}{_num(self.low)}, {_num(self.high)}{hi}"

    def admits(self, value: float) -> bool:
        above = value > self.low if "low" in self.open_ends else value >= self.low
        below = value < self.high if "high" in self.open_ends else value <= self.high
        return above and below

    @property
    def default_value(self) -> Any:
        return self.default.value if isinstance(self.default, Fixed) else None

    def card_text(self, value: Any) -> str:
        if self.kind is int:
            return str(int(value))
        return repr(float(value)) if self.card_exact else rounded(float(value))


def _num(x: float) -> str:
    return "inf" if x == INF else f"{x:g}"


def rounded(value: float, decimals: int = 4) -> str:
    """How transformers' generated cards print numbers: at most `decimals` decimals, shorter ones as they are."""
    text = str(value)
    if "." in text and "e" not in text and len(text.split(".")[1]) > decimals:
        return f"{value:.{decimals}f}"
    return text


REGISTRY: tuple[Hyperparam, ...] = (
    Hyperparam("learning_rate", float, FloatRange(1e-5, 1e-3, log=True), 0.0, 1.0, open_ends=("low", "high"),
               log=True, help="AdamW's peak learning rate (linear schedule)",
               card="learning_rate", card_slot="lead", card_exact=True, column="lr", fmt=".2e"),
    Hyperparam("batch_size", int, Choices((16, 32, 64, 128)), 1, MAX_BATCH_SIZE, list_means="choices",
               help=f"the effective batch (micro-batches x accumulation), up to {MAX_BATCH_SIZE}",
               column="batch", fmt="d"),  # the card prints it from the batch record: train/eval/accumulation
    Hyperparam("temperature", float, FloatRange(1.0, 20.0), 0.0, INF, open_ends=("low",),
               help="softens teacher and student distributions in the KL term",
               card="temperature", card_slot="distillation", card_rank=1, column="T", fmt=".2f"),
    Hyperparam("alpha", float, FloatRange(0.0, 1.0), 0.0, 1.0,
               help="weight of the label (cross-entropy) loss; 1 - alpha weighs the distillation term",
               card="alpha", card_slot="distillation", column="alpha", fmt=".2f"),
    Hyperparam("epochs", int, Fixed(3), 1, 1000, help="passes over the training data",
               card="num_epochs", card_slot="end", column="epochs", fmt="d"),
    Hyperparam("weight_decay", float, Fixed(0.0), 0.0, INF, help="AdamW weight decay (not on biases/LayerNorm)",
               card="weight_decay", card_always=False),
    Hyperparam("warmup_ratio", float, Fixed(0.0), 0.0, 1.0, open_ends=("high",),
               help="fraction of the steps spent warming the learning rate up",
               card="lr_scheduler_warmup_ratio", card_always=False),
    Hyperparam("max_grad_norm", float, Fixed(1.0), 0.0, INF, help="gradient clipping norm (0 turns clipping off)",
               card="max_grad_norm", card_always=False),
    Hyperparam("hidden_dropout", float, Fixed(0.1), 0.0, 1.0, open_ends=("high",),
               help="the student's dropout on hidden states (BERT's hidden_dropout_prob)",
               card="hidden_dropout_prob", card_always=False),
    Hyperparam("augment", int, Fixed(0), 0, MAX_AUGMENT,
               help="augmented copies of each labeled training sentence, labelled by the teacher ([data.augment])",
               card="augmented_copies_per_sentence", card_slot="distillation", card_rank=2, card_always=False),
)
BY_NAME = {h.name: h for h in REGISTRY}
NAMES = tuple(BY_NAME)


def _hyperparams_class():
    """`Hyperparams`: one frozen field per registry entry (fixed defaults become field defaults) plus the seed."""
    required = [(h.name, h.kind) for h in REGISTRY if not isinstance(h.default, Fixed)]
    optional = [(h.name, h.kind, dataclasses.field(default=h.default.value)) for h in REGISTRY
                if isinstance(h.default, Fixed)]
    cls = dataclasses.make_dataclass("Hyperparams", required + optional + [("seed", int, dataclasses.field(default=0))],
                                     frozen=True)
    cls.__module__ = __name__
    cls.__doc__ = "Everything one training run needs to know, searched or fixed (one field per registry entry)."
    return cls


Hyperparams = _hyperparams_class()


def from_values(values: dict, seed: int) -> "Hyperparams":
    """A trial's Hyperparams from its values by name (searched and fixed), each cast to its declared type."""
    return Hyperparams(**{h.name: h.kind(values[h.name]) for h in REGISTRY}, seed=int(seed))


def card_lines(values: dict, slot: CardSlot) -> list[tuple[str, str]]:
    """(card name, text) for the entries of one card slot, in registry order."""
    out = []
    for h in sorted(REGISTRY, key=lambda h: h.card_rank):
        if h.card is None or h.card_slot != slot or h.name not in values:
            continue
        value = values[h.name]
        if not h.card_always and h.default_value is not None and value == h.default_value:
            continue
        out.append((h.card, h.card_text(value)))
    return out


def columns(searched: tuple[str, ...] = ()) -> list[Hyperparam]:
    """The hyperparameters a leaderboard or progress line shows: those with a column, and any searched one."""
    return [h for h in REGISTRY if h.column or h.name in searched]


def cell(h: Hyperparam, value: Any) -> str:
    if value is None:
        return "-"
    return format(int(value) if h.fmt == "d" else float(value), h.fmt)
