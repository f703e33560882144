"""The model card of each kept trial, attached to it as an optuna-dashboard artifact and replaced when it changes.

Cards change as the study goes on (rank, trial counts), so they are attached to finished trials in the layout
optuna-dashboard reads for them (searcher.internals explains why that is the one private schema left): one current
card per kept trial, never a pile of stale ones. The artifact store is the study's (searcher.records.artifacts).
"""

from __future__ import annotations

import io
import json
import logging
import uuid

import optuna
from optuna.artifacts import FileSystemArtifactStore

from searcher import internals
from searcher.card.render import card_text
from searcher.card.text import repo_id_for
from searcher.config import StudyConfig
from searcher.errors import SearcherError, first_line
from searcher.records.artifacts import store
from searcher.records.checkpoints import keep_set

log = logging.getLogger(__name__)

CARD_FILENAME = "README.md"
DASHBOARD_PREFIX = internals.DASHBOARD_ARTIFACTS


def _card_metas(study: optuna.Study) -> dict[int, list[tuple[str, dict]]]:
    """trial_id -> [(attr key, artifact meta)] of the card artifacts currently attached."""
    out: dict[int, list] = {}
    storage = internals.storage_of(study)
    for key, value in storage.get_study_system_attrs(internals.study_id(study)).items():
        if not key.startswith(DASHBOARD_PREFIX):
            continue
        meta = json.loads(value) if isinstance(value, str) else value
        if not meta or meta.get("filename") != CARD_FILENAME:
            continue
        trial_id = int(key[len(DASHBOARD_PREFIX):].split(":", 1)[0])
        out.setdefault(trial_id, []).append((key, meta))
    return out


def sync_cards(study: optuna.Study, config: StudyConfig) -> None:
    """Attach the current card to each kept trial; drop cards of trials that are no longer kept."""
    fs = store(config)
    storage, study_id = internals.storage_of(study), internals.study_id(study)
    keep = keep_set(study, config.study.keep_best)
    attached = _card_metas(study)
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    wanted = {}
    for number in keep:
        trial = by_number[number]
        repo_id = repo_id_for(config.hub.repo_id, config.study.name, trial) if config.hub.repo_id else None
        try:
            wanted[internals.trial_id(trial)] = card_text(study, config, trial, repo_id)
        except SearcherError as e:  # a broken custom template must not stop the search
            log.warning("dashboard: no card for trial %d (%s)", number, first_line(e))
    for trial_id, text in wanted.items():
        current = attached.get(trial_id, [])
        if len(current) == 1 and _read(fs, current[0][1]["artifact_id"]) == text:
            continue
        artifact_id = str(uuid.uuid4())
        fs.write(artifact_id, io.BytesIO(text.encode("utf-8")))
        meta = {"artifact_id": artifact_id, "filename": CARD_FILENAME, "mimetype": "text/markdown",
                "encoding": None}
        storage.set_study_system_attr(study_id, f"{DASHBOARD_PREFIX}{trial_id}:{artifact_id}", json.dumps(meta))
        _drop(fs, storage, study_id, current)
    for trial_id, current in attached.items():
        if trial_id not in wanted:
            _drop(fs, storage, study_id, current)


def _read(fs: FileSystemArtifactStore, artifact_id: str) -> str | None:
    try:
        with fs.open_reader(artifact_id) as f:
            return f.read().decode("utf-8")
    except Exception:  # noqa: BLE001 - a missing or unreadable file is simply replaced
        return None


def _drop(fs, storage, study_id: int, entries: list) -> None:
    # the same two steps optuna-dashboard's "delete artifact" button takes
    for key, meta in entries:
        try:
            fs.remove(meta["artifact_id"])
        except Exception:  # noqa: BLE001 - already gone
            pass
        storage.set_study_system_attr(study_id, key, json.dumps(None))


def card_artifact(study: optuna.Study, config: StudyConfig, number: int) -> str | None:
    """The card currently attached to trial `number` (for tests and tooling)."""
    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    entries = _card_metas(study).get(internals.trial_id(trial), [])
    return _read(store(config), entries[0][1]["artifact_id"]) if entries else None
