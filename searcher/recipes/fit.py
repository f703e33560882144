"""A recipe measured against a study: what goes into its [[enqueue]] block, what the study already trains with, and
what it cannot take (never clipped: one line naming the key to change).
"""

from __future__ import annotations

from searcher.recipes.cards import _miniature
from searcher.recipes.names import PARAMETERS, STATIC_KEYS, STUDENT_KEYS
from searcher.recipes.recipe import Fit, Recipe, distill_table, distill_text, fmt as _fmt, ordered as _ordered


def _section_of(key: str) -> str:
    if key == "checkpoint":
        return "[student] checkpoints"
    return f"[student] {key}" if key in STUDENT_KEYS + STATIC_KEYS else f"[search] {key}"


def _describe_dim(dim) -> str:
    from searcher.config import Choices, FloatRange, IntRange

    if isinstance(dim, Choices):
        return "[" + ", ".join(_fmt(v) for v in dim.values) + "]"
    if isinstance(dim, (FloatRange, IntRange)):
        return f"[{_fmt(dim.low)}, {_fmt(dim.high)}]" + (" (log)" if dim.log else "")
    return _fmt(dim.value)


def fit(recipe: Recipe, config=None) -> Fit:
    """Measure a recipe against a study (searcher.config.StudyConfig). Values the study fixes to the same value are
    left out; values it cannot take are left out too (never clipped) with one line naming the key to change."""
    values = dict(recipe.values)
    if config is None:
        return Fit(values=values, same=[], conflicts=[])
    from searcher.config import Choices, FloatRange, Fixed, IntRange, resolved_dict
    from searcher.search.space import dimensions

    dims = dimensions(config)
    conflicts: list[str] = []
    ours = distill_table(resolved_dict(config).get("distill"))
    if recipe.distill is not None and recipe.distill != ours:
        conflicts.append(f"the source distilled with {distill_text(recipe.distill)}, this study with "
                         f"{distill_text(ours) if ours else 'the logits loss alone'}: set its [distill] like the "
                         f"source's to train this recipe as published")
    if "checkpoint" in dims and "checkpoint" not in values and \
            (recipe.base_model or any(k in values for k in STUDENT_KEYS)):
        # a checkpoint-list study names its student by checkpoint, not by layers/hidden/init
        init = values.pop("init", "pretrained")
        layers, hidden = values.pop("layers", None), values.pop("hidden", None)
        miniature = (f"google/bert_uncased_L-{layers}_H-{hidden}_A-{hidden // 64}"
                     if isinstance(layers, int) and isinstance(hidden, int) else None)
        if init != "pretrained":
            conflicts.append(f"init = {_fmt(init)}: this study trains pretrained [student] checkpoints only: "
                             f"not imported")
        elif recipe.base_model or miniature:
            values["checkpoint"] = recipe.base_model or miniature
        else:
            conflicts.append(f"layers = {_fmt(layers)}: this study uses a [student] checkpoints list and the source "
                             f"names no checkpoint: not imported")
    elif "checkpoint" not in dims and "checkpoint" in values:
        shape = _miniature(str(values["checkpoint"]))
        if shape and "layers" not in values:
            values.pop("checkpoint")
            values.update(layers=shape[0], hidden=shape[1], init="pretrained")

    kept, same = {}, []
    builtin = _builtin_defaults()
    for key, value in _ordered(values).items():
        dim = dims.get(key)
        shown = f"{key} = {_fmt(value)}"
        if dim is None and key in builtin and value == builtin[key]:
            same.append(shown)  # e.g. max_grad_norm = 1.0: what searcher uses when the study does not search it
        elif dim is None:
            conflicts.append(f"{shown}: this study has no {key} parameter"
                             + (" (it builds students from the [student] layers/hidden grid)" if key == "checkpoint"
                                else " (it uses a [student] checkpoints list)" if key in STUDENT_KEYS else "")
                             + ": not imported")
        elif isinstance(dim, Fixed):
            if dim.value is None:
                conflicts.append(f"{shown}: this study does not choose {key} (its students take the teacher's "
                                 f"size): not imported")
            elif value == dim.value:
                same.append(shown)
            else:
                conflicts.append(f"{shown} conflicts with {_section_of(key)} = {_fmt(dim.value)}, which the study "
                                 f"fixes: make {_section_of(key)} a range or a list to import this value")
        elif isinstance(dim, (FloatRange, IntRange)):
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            on_grid = (not isinstance(dim, IntRange) or
                       (isinstance(value, int) and (value - dim.low) % dim.step == 0))
            if number and dim.low <= value <= dim.high and on_grid:
                kept[key] = value
            elif number and dim.low <= value <= dim.high:
                conflicts.append(f"{shown} is not on the step {dim.step} of {_section_of(key)} "
                                 f"{_describe_dim(dim)}: change its step to import this value")
            else:
                conflicts.append(f"{shown} is outside {_section_of(key)} {_describe_dim(dim)}: widen it to import "
                                 f"this value")
        elif isinstance(dim, Choices):
            if value in dim.values:
                kept[key] = value
            else:
                conflicts.append(f"{shown} is not one of {_section_of(key)} {_describe_dim(dim)}: add it to import "
                                 f"this value")
    return Fit(values=kept, same=same, conflicts=conflicts)


def _builtin_defaults() -> dict:
    """Values searcher trains with when a study file does not mention them (searcher.train.distill.Hyperparams)."""
    import dataclasses

    from searcher.train.distill import Hyperparams

    return {f.name: f.default for f in dataclasses.fields(Hyperparams)
            if f.name in PARAMETERS and f.default is not dataclasses.MISSING}


def conflicts(recipes: list[Recipe], config) -> list[str]:
    """Every value the study cannot take, one line each naming the source and the key to change (for the CLI)."""
    return [f"{r.source}: {line}" for r in recipes for line in fit(r, config).conflicts]

