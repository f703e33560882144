"""Files attached to trials in Optuna's FileSystemArtifactStore (a folder beside the study database), so that
optuna-dashboard shows and serves them: each trial's per-epoch table, and the model card of each kept trial.

The per-epoch table is uploaded with optuna's public `upload_artifact` while the trial still runs. Cards change as
the study goes on (rank, trial counts), so they are attached to finished trials in the layout optuna-dashboard reads
for them (searcher.internals explains why that is the one private schema left) and replaced when they change: one
current card per kept trial, never a pile of stale ones.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import tempfile
import uuid
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

from searcher import internals, records
from searcher.config import StudyConfig
from searcher.errors import SearcherError, first_line

log = logging.getLogger(__name__)

CARD_FILENAME = "README.md"
EPOCHS_FILENAME = "epochs.csv"
DASHBOARD_PREFIX = internals.DASHBOARD_ARTIFACTS


def store(config: StudyConfig) -> FileSystemArtifactStore:
    config.artifacts_dir.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(config.artifacts_dir))


def epochs_csv(history_columns: dict) -> str:
    rows = records.history_rows(history_columns)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(history_columns), lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow(row)
    return buf.getvalue()


def upload_epochs(trial: optuna.Trial, config: StudyConfig) -> None:
    """Attach the per-epoch table to a running trial (complete or about to be pruned)."""
    history = trial.user_attrs.get(records.HISTORY)
    if not history:
        return
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / EPOCHS_FILENAME
        path.write_text(epochs_csv(history))
        upload_artifact(artifact_store=store(config), file_path=str(path), study_or_trial=trial,
                        mimetype="text/csv")


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
    from searcher import card
    from searcher.checkpoints import keep_set

    fs = store(config)
    storage, study_id = internals.storage_of(study), internals.study_id(study)
    keep = keep_set(study, config.study.keep_best)
    attached = _card_metas(study)
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    wanted = {}
    for number in keep:
        trial = by_number[number]
        repo_id = card.repo_id_for(config.hub.repo_id, config.study.name, trial) if config.hub.repo_id else None
        try:
            wanted[internals.trial_id(trial)] = card.card_text(study, config, trial, repo_id)
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
