"""Files attached to trials in Optuna's FileSystemArtifactStore (a folder beside the study database), so that
optuna-dashboard shows and serves them: each trial's per-epoch table, uploaded with optuna's public `upload_artifact`
while the trial still runs. The model cards attached to kept trials are searcher.card.attached.
"""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

from searcher import records
from searcher.config import StudyConfig

EPOCHS_FILENAME = "epochs.csv"


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


