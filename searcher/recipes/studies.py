"""Finished Optuna studies as recipes (STORAGE_URL::STUDY_NAME): one per complete trial, best first. A searcher
study's trials carry their exact values (searcher.recipes.own); any other study's params (Trainer.hyperparameter_search
names them like TrainingArguments) are mapped like a card's hyperparameter list.
"""

from __future__ import annotations

from typing import Optional

from searcher.errors import RecipeError
from searcher.recipes.cards import ALPHA_CONVENTION, _key, _map_items
from searcher.recipes.own import _searcher_published, _searcher_values, distill_notes
from searcher.recipes.recipe import (PublishedResult, Recipe, distill_table, fmt as _fmt, ordered as _ordered,
                                     unique as _unique)


def open_study(source: str):
    """searcher.records.storage.open_study, which this was (kept for recipes' callers). Imported when called: at the top of
    this module it would load optuna with every import of the recipes package."""
    from searcher.records.storage import open_study as storage_open_study

    return storage_open_study(source)


def read_study(source: str) -> list[Recipe]:

    from searcher import records
    from searcher.records import storage

    study, shown = open_study(source)
    trials = records.completed(study)  # a warm-started study's copies are another study's trials
    if not trials:
        raise RecipeError(f"{shown}: the study has no complete trials: nothing to import")
    trials = records.ranked(study, trials)  # best first, Pareto-consistent in a multi-objective study
    dataset = study.user_attrs.get(storage.ATTR_DATASET) or {}
    metric_names = study.metric_names or [f"objective {i}" for i in range(len(study.directions))]
    distill = distill_table((study.user_attrs.get(storage.ATTR_CONFIG) or {}).get("distill"))
    return [_trial_recipe(t, rank, len(trials), shown, dataset, metric_names, distill)
            for rank, t in enumerate(trials, 1)]


def _trial_recipe(trial, rank: int, n: int, shown: str, dataset: dict, metric_names: list,
                  distill: Optional[dict] = None) -> Recipe:
    from searcher import records

    origin = f"trial {trial.number}"
    source = f"{shown} trial {trial.number} (rank {rank} of {n})"
    hyperparams = trial.user_attrs.get(records.HYPERPARAMS)
    notes: list[str] = []
    base_model = None
    if isinstance(hyperparams, dict):  # a searcher trial
        values, provenance, unmapped, notes, base_model = _searcher_values(
            trial.params, hyperparams, trial.user_attrs.get(records.STUDENT) or {}, origin)
        published = _searcher_published(trial.user_attrs.get(records.METRICS) or {},
                                        trial.user_attrs.get(records.TEST_METRICS) or {}, dataset, origin)
    else:  # any other Optuna study (Trainer.hyperparameter_search names its params like TrainingArguments)
        items = [(k, _key(k), _fmt(v) if not isinstance(v, str) else v) for k, v in trial.params.items()]
        m = _map_items(items, f"{origin} params")
        values, provenance, unmapped, notes = _ordered(m.values), m.provenance, m.unmapped, m.notes
        if "alpha" in values:
            notes.append(ALPHA_CONVENTION)
        published = []
    if not published:
        published = [PublishedResult(metric_type=str(metric), value=float(v), source=f"{origin} value")
                     for metric, v in zip(metric_names, trial.values)]
    if isinstance(hyperparams, dict):
        notes += distill_notes(distill)
    return Recipe(values=values, provenance=provenance, unmapped=unmapped, notes=_unique(notes), published=published,
                  source=source, link=None, base_model=base_model,
                  distill=distill if isinstance(hyperparams, dict) else None)


