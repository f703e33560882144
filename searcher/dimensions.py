"""What a hyperparameter is: its declaration (`Hyperparam`) and the values it may take (`Fixed`, `FloatRange`,
`IntRange`, `Choices`). The registry of searcher's hyperparameters is searcher.hyperparams; the distillation losses
declare their own entries with these classes (searcher.losses).

This module must not import torch, transformers or optuna (the config and `searcher --help` stay instant).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

INF = math.inf


# ---------------------------------------------------------------------------------------------------------------
# A value is either fixed or searched. Only searcher.search.space turns these into trial.suggest_* calls.


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


LOG2 = "_log2"  # suffix of a power-of-two choice that searcher.search.space asks of Optuna as its exponent (GP, CMA-ES)


def user_params(params: dict) -> dict:
    """Optuna's parameters under the names and values of the study file, for [[enqueue]] lines and cards:
    `batch_size_log2 = 5` is `batch_size = 32` (searcher.search.space's numeric encoding); others are unchanged."""
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
    value_type: type  # float or int (its Python type; "kind" is a task's kind)
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
    # what `searcher import` reads as this parameter in published cards and studies: its card name and name always,
    # and these other published names (lower case, "_" for spaces and hyphens); "batch" means the Trainer's batch
    # lines (per-device size x accumulation x devices, or the total), which need more than a rename
    aliases: tuple[str, ...] = ()
    imported_as: Literal["value", "batch"] = "value"

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
        if self.value_type is int:
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
