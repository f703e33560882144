"""searcher's own records as recipes: a card's front-matter data and searcher_trial.json. Both hold the values
exactly as the trial trained with them (its params, then what its study fixed, then its student): nothing is parsed
out of prose here. Finished studies are searcher.recipes.studies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from searcher.errors import RecipeError, first_line
from searcher.hyperparams import TEACHER_WEIGHT
from searcher.recipes.names import PARAMETERS, SEED, STATIC_KEYS
from searcher.recipes.recipe import (HUB, LOOKED_FOR, PublishedResult, Recipe, distill_text,
                                     fmt as _fmt, ordered as _ordered)


def card_data_values(data: dict, origin: str = "the card's front matter"):
    """(values, provenance, unmapped, notes, base model) from the `searcher` table of a searcher card's front matter
    (searcher.card.data writes it: the trial's params, every value it trained with, and its student)."""
    params = data.get("params") if isinstance(data.get("params"), dict) else {}
    hyperparams = data.get("hyperparams") if isinstance(data.get("hyperparams"), dict) else {}
    student = data.get("student") if isinstance(data.get("student"), dict) else {}
    where = origin + (f", trial {data['trial']} of study {data['study']!r}" if "trial" in data and "study" in data
                      else "")
    values, provenance, unmapped, notes, base_model = _searcher_values(params, hyperparams, student, where)
    distill = data.get("distill") if isinstance(data.get("distill"), dict) else None
    return values, provenance, unmapped, notes + distill_notes(distill) + teachers_notes(data.get("teachers")), \
        base_model, distill


def teachers_notes(table) -> list[str]:
    """A note naming the teachers of a card distilled from an ensemble or a causal LM (one classifier needs none)."""
    if not isinstance(table, dict) or not isinstance(table.get("members"), list) or not table["members"]:
        return []
    members = [m for m in table["members"] if isinstance(m, dict)]
    named = ", ".join(f"{m.get('name')} ({m.get('model') or m.get('base') or '?'}"
                      f"{', causal LM' if m.get('type') == 'causal_lm' else ''}"
                      f"{', weight ' + str(m['weight']) if len(members) > 1 and 'weight' in m else ''})"
                      for m in members)
    if len(members) == 1:
        return [f"the source was distilled from a prompted causal LM teacher, {named}: give it as [teacher] with the "
                f"same prompt and verbalizers to train it as published"]
    return [f"the source was distilled from an ensemble of {len(members)} teachers (the mean of their "
            f"{table.get('combine', 'logits')}): {named}; list them in [[teachers]] to train it as published"]


def distill_notes(table: Optional[dict]) -> list[str]:
    return [f"the source distilled with {distill_text(table)}: set the same in the study file to train it as "
            f"published"] if table else []


def read_trial_json(path: Path, source: str) -> Recipe:
    try:
        record = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except json.JSONDecodeError as e:
        raise RecipeError(f"{path} is not valid JSON ({first_line(e)})") from e
    if not isinstance(record, dict) or not isinstance(record.get("params"), dict):
        raise RecipeError(f"no hyperparameters in {source}: {path.name} has no \"params\"; {LOOKED_FOR}")
    repo_id = record.get("repo_id")
    origin = f"{path.name}, trial {record.get('trial')} of study {record.get('study')!r}"
    values, provenance, unmapped, notes, base_model = _searcher_values(
        record["params"], record.get("hyperparams") or {}, record.get("student") or {}, origin)
    published = _searcher_published(record.get("metrics") or {}, record.get("test_metrics") or {},
                                     record.get("dataset") or {}, origin)
    distill = record.get("distill") if isinstance(record.get("distill"), dict) else None
    return Recipe(values=values, provenance=provenance, unmapped=unmapped, notes=notes + distill_notes(distill),
                  published=published, source=source, link=HUB + repo_id if repo_id else None, base_model=base_model,
                  distill=distill)


def _searcher_values(params: dict, hyperparams: dict, student: dict, origin: str):
    """A searcher trial's params (exact), then the values its study fixed (the `hyperparams` record)."""
    values, provenance, unmapped, notes = {}, {}, [], []
    for key, value in params.items():
        if key in PARAMETERS or key.startswith(TEACHER_WEIGHT):  # teacher_weight.NAME: a searched ensemble share
            values[key] = value
            provenance[key] = f"{key} = {_fmt(value)} (trial params, {origin})"
        else:
            unmapped.append(f"{key}: {_fmt(value)} (trial param; not a searcher parameter)")
    for key, value in hyperparams.items():
        if key == SEED:
            notes.append(f"set [study] seed = {value} (the source study's seed)")
        elif key in PARAMETERS and key not in values and value is not None:
            values[key] = value
            provenance[key] = f"{key} = {_fmt(value)} (hyperparams, {origin}; fixed in the source study)"
    # the student, where the study fixed it; a grid student's checkpoint is derived from layers/hidden
    init = params.get("init", student.get("init"))
    fixed_student = {"init": init, "layers": student.get("layers")}
    if init != "teacher":
        fixed_student["hidden"] = student.get("hidden")
    if params.get("family", student.get("family")) == "static":  # a static student: its own settings, no shape
        fixed_student = {k: params.get(k, student.get(k)) for k in STATIC_KEYS}
        init = None
    if "checkpoint" not in params:
        for key, value in fixed_student.items():
            if key not in values and value is not None:
                values[key] = value
                provenance[key] = f"{key} = {_fmt(value)} (student, {origin}; fixed in the source study)"
    base_model = params.get("checkpoint") or (student.get("checkpoint") if init == "pretrained" else None)
    if any(k.startswith(TEACHER_WEIGHT) for k in values):
        notes.append("the source searched its ensemble's weights ([teacher] search_weights): the teacher_weight.* "
                     "values fit a study with the same [[teachers]] names and search_weights")
    return _ordered(values), provenance, unmapped, notes, base_model


def _searcher_published(metrics: dict, test_metrics: dict, dataset: dict, origin: str) -> list[PublishedResult]:
    name = dataset.get("dataset") or Path(str((dataset.get("files") or {}).get("train", "") or "")).name or None
    splits = dataset.get("splits") or {}
    valid = (f"{dataset['holdout']} rows held out of train" if dataset.get("holdout") else
             splits.get("validation") or "validation")
    out = []
    for split, table in ((valid, metrics), (splits.get("test") or "test", test_metrics)):
        for key, value in table.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out.append(PublishedResult(metric_type=key, value=float(value), metric_name=key,
                                           dataset_type=name, dataset_name=name, dataset_config=dataset.get("subset"),
                                           dataset_split=split, source=origin))
    return out
