"""Recipes as `[[enqueue]]` blocks: one per recipe, after comments saying where each value came from, what was
published and what was left out. Floats are written with repr and strings as TOML basic strings, so the blocks
read back exactly.
"""

from __future__ import annotations

import json
import re

from searcher.recipes.fit import fit
from searcher.recipes.recipe import PublishedResult, Recipe, fmt as _fmt, ordered as _ordered


def _comment(text: str) -> str:
    text = re.sub(r"[\x00-\x08\x0a-\x1f\x7f]+", " ", text)  # a TOML comment ends at a newline
    return f"# {text}".rstrip()


def _bare_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _published_toml(published: list[PublishedResult]) -> str:
    """What the source reported, one inline table per evaluation (dataset, config, split), for the entry's
    `_published` key (searcher.search.space reads it back; the card compares it with the student on the same data)."""
    groups: dict[tuple, dict[str, float]] = {}
    for p in published:
        where = (p.dataset_type or p.dataset_name, p.dataset_config, p.dataset_split)
        groups.setdefault(where, {}).setdefault(p.metric_type, p.value)
    tables = []
    for (dataset, config, split), metrics in groups.items():
        keys = [f"{k} = {_fmt(v)}" for k, v in (("dataset", dataset), ("config", config), ("split", split)) if v]
        keys.append("metrics = {" + ", ".join(f"{_bare_key(k)} = {_fmt(v)}" for k, v in metrics.items()) + "}")
        tables.append("{" + ", ".join(keys) + "}")
    return "[" + ", ".join(tables) + "]"


def to_toml(recipes: list[Recipe], config=None) -> str:
    """[[enqueue]] blocks, one per recipe, each after comments saying where it came from and what was left out.
    Each block is marked with `_source` (and `_published`, what the source reported), which searcher.search.space turns
    into the trial's user attrs. Floats are written with repr, so they read back exactly."""
    blocks = []
    for recipe in recipes:
        f = fit(recipe, config)
        lines = [_comment(f"from {recipe.source}" + (f" ({recipe.link})" if recipe.link and
                                                        recipe.link not in recipe.source else ""))]
        lines += [_comment(f"published: {p.describe()} [{p.source}]") for p in recipe.published]
        lines += [_comment(f"{key} from {recipe.provenance.get(key, 'an unrecorded place')}")
                  for key in _ordered(recipe.values)]
        lines += [_comment(f"not imported: {u}") for u in recipe.unmapped]
        lines += [_comment(f"note: {n}") for n in recipe.notes]
        lines += [_comment(c) for c in f.conflicts]
        lines += [_comment(f"{s}: the study already trains with this value") for s in f.same]
        if f.values:
            lines.append("[[enqueue]]")
            lines.append(f"_source = {_fmt(recipe.link or recipe.source)}")
            if recipe.published:
                lines.append(f"_published = {_published_toml(recipe.published)}")
            lines += [f"{_bare_key(key)} = {_fmt(value)}" for key, value in f.values.items()]
        else:
            lines.append(_comment("nothing to enqueue from this source"))
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)

