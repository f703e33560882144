"""What `searcher import` reads a source into: a `Recipe` (values, where each came from, what was left out) and the
results the source published; `Fit` is a recipe measured against a study. Plain data, no I/O.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Optional

from searcher.config.identity import distill_table  # noqa: F401 - the readers of searcher's records use it
from searcher.errors import RecipeError  # noqa: F401 - raised by every part of the importer
from searcher.recipes.names import PARAMETERS

LOOKED_FOR = ("looked for a Trainer 'hyperparameters were used during training' list, a SetFit 'Training "
              "Hyperparameters' list, searcher's card data, a searcher [[enqueue]] block and searcher_trial.json")
HUB = "https://huggingface.co/"
PICKLED = ("hyperparameters are only in training_args.bin, which is a pickled TrainingArguments; searcher does not "
           "unpickle it: nothing to import")


@dataclass(frozen=True)
class PublishedResult:
    """One published score: what was measured on which data, and where in the source it was found."""

    metric_type: str
    value: float
    metric_name: Optional[str] = None
    dataset_type: Optional[str] = None
    dataset_name: Optional[str] = None
    dataset_config: Optional[str] = None
    dataset_split: Optional[str] = None
    source: str = ""

    def describe(self) -> str:
        data = ", ".join(x for x in (self.dataset_name or self.dataset_type, self.dataset_config, self.dataset_split)
                         if x)
        return f"{self.metric_type} = {fmt(self.value)}" + (f" ({data})" if data else "")


@dataclass(frozen=True)
class Recipe:
    """What one source says about one training run, in searcher's terms."""

    values: dict[str, Any]  # searcher parameter name -> exact value
    provenance: dict[str, str]  # parameter name -> where the value came from
    unmapped: list[str] = field(default_factory=list)  # "name: value" found but not importable, verbatim
    notes: list[str] = field(default_factory=list)  # e.g. "set [study] seed = 33"
    published: list[PublishedResult] = field(default_factory=list)
    source: str = ""
    link: Optional[str] = None  # https://huggingface.co/<id> for Hub ids
    base_model: Optional[str] = None  # the student's starting checkpoint, when the source names one
    distill: Optional[dict] = None  # searcher's own sources: the [distill] table it trained with (layer-wise losses)


def distill_text(table: dict) -> str:
    """The table as a study file would write it, on one line: `[distill] losses = [...]; [distill.minilm] ...`."""
    head = [f"{k} = {fmt_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    parts = ["[distill] " + ", ".join(head)]
    parts += [f"[distill.{name}] " + ", ".join(f"{k} = {fmt_value(v)}" for k, v in options.items())
              for name, options in table.items() if isinstance(options, dict) and options]
    return "; ".join(parts)


def fmt_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt_value(v) for v in value) + "]"
    return "null" if value is None else fmt(value)


@dataclass(frozen=True)
class Fit:
    """A recipe measured against a study: what goes into its [[enqueue]] block and what is left out, and why."""

    values: dict[str, Any]
    same: list[str]  # "epochs = 8": the study already trains with this value (fixed, or searcher's default)
    conflicts: list[str]  # one line each: the value, why it cannot be imported, and the key to change




def fmt(value: Any) -> str:
    """A value as TOML writes it: repr for floats (round-trips exactly), a TOML basic string for strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):  # TOML has nan and inf, but no study takes them: callers refuse them first
            return {"nan": "nan", "inf": "inf", "-inf": "-inf"}[repr(value)]
        return repr(value)
    if isinstance(value, int):
        return str(value)
    return toml_string(str(value))


def toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, and characters outside the BMP stay literal (JSON's \\ud83d
    surrogate pairs are not valid TOML); undecodable bytes from a file name become U+FFFD."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return json.dumps(text, ensure_ascii=False)


def ordered(values: dict) -> dict:
    return {k: values[k] for k in sorted(values, key=lambda k: (PARAMETERS.index(k) if k in PARAMETERS else 99, k))}


def unique(items: list) -> list:
    return list(dict.fromkeys(items))
