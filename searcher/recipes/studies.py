"""Finished Optuna studies as recipes (STORAGE_URL::STUDY_NAME): one per complete trial, best first. A searcher
study's trials carry their exact values (searcher.recipes.own); any other study's params (Trainer.hyperparameter_search
names them like TrainingArguments) are mapped like a card's hyperparameter list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from searcher.errors import RecipeError, SearcherError, first_line
from searcher.recipes.cards import ALPHA_CONVENTION, _key, _map_items
from searcher.recipes.own import _searcher_published, _searcher_values, distill_notes
from searcher.recipes.recipe import (PublishedResult, Recipe, distill_table, fmt as _fmt, ordered as _ordered,
                                     unique as _unique)


def open_study(source: str):
    """A finished study as STORAGE_URL::STUDY_NAME, opened for reading: (study, the source with its password
    redacted). A SQLite or journal file that does not exist is an error, never created empty."""
    import optuna

    from searcher import storage

    url, _, name = source.rpartition("::")
    shown = f"{storage.redact(url)}::{name}"
    if not url or not name:
        raise RecipeError(f"{shown}: give a finished study as STORAGE_URL::STUDY_NAME, e.g. "
                          f"sqlite:////abs/path/study.db::my-study")
    # opening a missing SQLite or journal file would create an empty one there
    file = (url[len("sqlite:///"):] if url.startswith("sqlite:///") else
            url[len("journal:"):] if url.startswith("journal:") else url if url.endswith(".log") else None)
    if file not in (None, "", ":memory:") and not Path(file).is_file():
        raise RecipeError(f"{shown}: the storage file {file} does not exist; check the path "
                          f"(sqlite:////abs/path.db has four slashes)")
    try:
        opened = storage.open_storage(url)
        study = optuna.load_study(study_name=name, storage=opened)
    except KeyError as e:
        names = ", ".join(optuna.get_all_study_names(storage=opened)) or "none"
        raise RecipeError(f"{shown}: no study named {name!r} there (studies: {names})") from e
    except SearcherError as e:
        raise RecipeError(f"{shown}: {first_line(e)}") from e
    return study, shown


def read_study(source: str) -> list[Recipe]:
    import optuna

    from searcher import records, storage

    study, shown = open_study(source)
    trials = records.completed(study)  # a warm-started study's copies are another study's trials
    if not trials:
        raise RecipeError(f"{shown}: the study has no complete trials: nothing to import")
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    trials = sorted(trials, key=lambda t: ((-t.values[0] if maximize else t.values[0]), t.number))
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


