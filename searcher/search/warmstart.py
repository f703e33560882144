"""Warm start: copy the complete trials of finished studies ([study] warm_start = ["STORAGE_URL::STUDY_NAME"]) into
a study's history before its first trial, so that its sampler starts from what they learned.

A copy is a COMPLETE trial with this study's distributions, the source trial's values, and the user attrs
warm_start_source (the source, password redacted) and warm_start_trial (its number there). Only what this study can
take is copied: a parameter it does not search is dropped; a trial is dropped when a parameter it searches is missing
or outside its range, or when the source trained with another value of something this study fixes (searcher's
sources record their fixed values). Copies carry no per-epoch values, so the pruner compares this study's own
trials only. records.own_trials() keeps copies out of the n_trials budget, the leaderboard, cards, the dashboard
note and checkpoint retention; the sampler (TPE) sees them, which is the point.

Each source is read once: the study records the sources it has read, with their counts (study user attr
searcher:warm_started), and a resumed study does not read them again, not even open them, so it no longer needs
them; a source that gave no copy is not read again either. (Studies warm-started before that record are recognised
by their copies' warm_start_source.) This module writes nothing but the copies and that record.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from searcher import hyperparams, records, redact
from searcher.search import space
from searcher.records import storage as st
from searcher.config import StudyConfig
from searcher.errors import ConfigError, StudyError, first_line
from searcher.hyperparams import Fixed

log = logging.getLogger(__name__)

STUDENT_KEYS = ("layers", "hidden", "init", "checkpoint")
STATIC_KEYS = ("static_dim", "static_train_embeddings", "static_head")


@dataclass
class Report:
    """What one source gave: trials copied, trials dropped (by reason) and parameters dropped (by name)."""

    source: str
    complete: int = 0
    copied: int = 0
    dropped_trials: Counter = field(default_factory=Counter)
    dropped_params: Counter = field(default_factory=Counter)

    def line(self) -> str:
        text = f"warm start: copied {self.copied} of {self.complete} complete trials of {self.source}"
        if self.dropped_trials:
            text += (f"; dropped {sum(self.dropped_trials.values())} trials ("
                     + ", ".join(f"{why}: {n}" for why, n in self.dropped_trials.most_common()) + ")")
        if self.dropped_params:
            text += ("; dropped parameters this study does not search (or searches as another kind): "
                     + ", ".join(f"{name} ({n} trials)" for name, n in self.dropped_params.most_common()))
        return text


def shown(entry: str) -> str:
    """A [study] warm_start entry as it is recorded and logged: its password redacted."""
    return redact.text(entry)


def copied_sources(trials) -> set[str]:
    return {t.user_attrs[records.WARM_START_SOURCE] for t in trials if records.is_warm_start(t)}


def read_sources(attrs: dict, trials) -> set[str]:
    """The sources this study has read already: recorded on the study, or (before that record) seen in its copies."""
    return set(attrs.get(st.ATTR_WARM_STARTED) or {}) | copied_sources(trials)


def names_this_study(entry: str, own_url: str, own_name: str) -> bool:
    """Whether a warm_start entry is this very study, however its URL is spelled (searcher.records.storage.same_storage):
    copying its own trials into itself would show the sampler every trial twice."""
    url, _, name = entry.rpartition("::")
    return name == own_name and st.same_storage(url, own_url)


def pending(config: StudyConfig, storage: Optional[optuna.storages.BaseStorage],
            own_url: str) -> list[tuple[str, optuna.Study]]:
    """The warm_start studies this study has not read yet, opened and checked against it; nothing is written,
    so a missing or unfit source fails before the study is touched."""
    if not config.study.warm_start:
        return []
    try:
        study_id = storage.get_study_id_from_name(config.study.name) if storage is not None else None
    except KeyError:  # a new study
        study_id = None
    done = (read_sources(storage.get_study_user_attrs(study_id), storage.get_all_trials(study_id, deepcopy=False))
            if study_id is not None else set())
    out = []
    for entry in config.study.warm_start:
        name = shown(entry)
        if names_this_study(entry, own_url, config.study.name):
            raise ConfigError(f"{config.path}: [study] warm_start names this study itself ({name}); name finished "
                              f"studies of other runs")
        if name in done:
            continue
        out.append((name, _open(config, entry)))
    return out


def check(config: StudyConfig, url: str) -> None:
    """`pending` before the data and the teacher are prepared (that may take many minutes), without creating the
    study's SQLite file when it does not exist yet."""
    if not config.study.warm_start:
        return
    from pathlib import Path

    file = st.storage_file(url) if url.startswith("sqlite:") else None
    if file is not None and not Path(file).is_file():
        pending(config, None, url)
    else:
        pending(config, st.open_storage(url, config), url)


def _open(config: StudyConfig, entry: str) -> optuna.Study:
    try:
        study, name = st.open_study(entry)
    except StudyError as e:
        raise ConfigError(f"{config.path}: [study] warm_start: {first_line(e)}") from e
    directions = [d.name.lower() for d in study.directions]
    if directions != list(config.study.directions):
        raise ConfigError(f"{config.path}: [study] warm_start {name}: its trials have {len(directions)} value(s) "
                          f"({', '.join(directions)}) but this study has {len(config.study.directions)} "
                          f"({', '.join(config.study.directions)}); warm-start only from studies with the same "
                          f"objectives and directions")
    if study.metric_names is not None and list(study.metric_names) != list(config.study.objectives):
        raise ConfigError(f"{config.path}: [study] warm_start {name}: its objectives are "
                          f"{list(study.metric_names)}, this study's {list(config.study.objectives)}; its values "
                          f"would mean something else here: warm-start only from studies with the same objectives")
    return study


def add(study: optuna.Study, config: StudyConfig, sources: list[tuple[str, optuna.Study]]) -> list[Report]:
    """Copy each pending source into `study`, under the study's claim lock so that workers starting together copy
    each source once. Logs one line per source."""
    if not sources:
        return []
    from searcher.search.claim import for_study

    claim = for_study(study)
    claim.acquire()
    try:
        done = read_sources(study.user_attrs, study.get_trials(deepcopy=False))
        reports = [copy_trials(study, config, source, name) for name, source in sources if name not in done]
        if reports:  # recorded under the lock too, so that a worker starting now does not read them again
            read = {**(study.user_attrs.get(st.ATTR_WARM_STARTED) or {}),
                    **{r.source: {"copied": r.copied, "complete": r.complete} for r in reports}}
            study.set_user_attr(st.ATTR_WARM_STARTED, read)
    finally:
        claim.release()
    for report in reports:
        (log.info if report.copied else log.warning)("%s", report.line())
    return reports


def copy_trials(study: optuna.Study, config: StudyConfig, source: optuna.Study, name: str) -> Report:
    """Add the source's own complete trials that fit this study's space to `study` (no lock, no checks of the
    source's objectives: `add` and `pending` do those)."""
    dims = space.dimensions(config)
    dists = space.distributions(config)
    report = Report(name)
    copies = []
    for trial in records.completed(source):  # a warm-started source's own copies are not its work
        report.complete += 1
        params, dropped, why = convert(trial, dims, dists)
        report.dropped_params.update(dropped)
        if why is not None:
            report.dropped_trials[why] += 1
            continue
        copies.append(optuna.trial.create_trial(
            state=TrialState.COMPLETE, values=list(trial.values), params=params,
            distributions={k: dists[k] for k in params},
            user_attrs={records.WARM_START_SOURCE: name, records.WARM_START_TRIAL: trial.number}))
    study.add_trials(copies)
    report.copied = len(copies)
    return report


def _recorded(trial: FrozenTrial) -> dict:
    """The values a searcher trial trained with, searched or fixed (its hyperparams and student records)."""
    hp = trial.user_attrs.get(records.HYPERPARAMS)
    student = trial.user_attrs.get(records.STUDENT)
    values = {k: v for k, v in (hp or {}).items() if k in hyperparams.NAMES}
    student = student or {}
    values["family"] = student.get("family", "bert")  # trials from before student families were bert students
    if values["family"] == "static":
        values.update({k: student[k] for k in STATIC_KEYS if student.get(k) is not None})
        return values
    values.update({k: v for k, v in student.items() if k in STUDENT_KEYS and v is not None})
    if values.get("init") == "teacher":
        values.pop("hidden", None)  # the teacher's size, not a choice
    if values.get("init") != "pretrained":
        values.pop("checkpoint", None)
    return values


def convert(trial: FrozenTrial, dims: dict, dists: dict[str, BaseDistribution]
            ) -> tuple[Optional[dict], list[str], Optional[str]]:
    """(this study's params for the trial, the source parameters dropped, why the whole trial is dropped or None)."""
    values = _recorded(trial)
    dropped = []
    for name, value in trial.params.items():
        target = dists.get(name)
        if target is None or type(trial.distributions[name]) is not type(target):
            dropped.append(name)  # not searched here, or searched as another kind
        if target is not None and type(trial.distributions[name]) is not type(target):
            values.pop(name, None)  # its recorded value must not stand in for it either
        elif name in dims:
            values[name] = value  # one this study fixes is still compared with the fixed value below
    init = values.get("init", dims["init"].value if isinstance(dims.get("init"), Fixed) else None)
    params = {}
    for name, dim in dims.items():
        if not space.applies(name, {**values, "init": init}):
            continue  # conditional: another family's parameter, or hidden of a teacher-initialised student
        if isinstance(dim, Fixed):
            if dim.value is not None and name in values and values[name] != dim.value:
                return None, dropped, f"{name} other than the {dim.value!r} this study fixes"
            continue
        if name not in values:
            return None, dropped, f"missing {name}"
        if not hyperparams.contains(dim, values[name]):
            return None, dropped, f"{name} outside {hyperparams.describe(dim)}"
        value, dist = values[name], dists[name]
        params[name] = (float(value) if isinstance(dist, optuna.distributions.FloatDistribution) else
                        int(value) if isinstance(dist, optuna.distributions.IntDistribution) else value)
    return params, dropped, None
