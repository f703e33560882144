"""Saved students: each complete trial's student is saved, and only the best k stay on disk.

Retention reads the study from storage under a file lock, so several workers can run it: a checkpoint is deleted
only when its trial is finished and outside the keep set (the best k by searcher.records.trial.ranked, plus the Pareto
front of a multi-objective study). A running trial's folder is never touched.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Optional

import optuna
from optuna.trial import TrialState

from searcher import files, timing
from searcher.errors import SearcherError, first_line
from searcher.records.trial import MODEL_DIR, WEIGHTS, pareto, ranked

log = logging.getLogger(__name__)

DIR_PATTERN = re.compile(r"^trial-(\d+)$")


class CheckpointError(SearcherError, OSError):
    """The student could not be written (disk full, folder not writable): the trial fails with this reason."""


RUN_RECORD = "searcher_run.json"  # the resolved run settings and whose checkpoint this is (study uid, trial)
FILES = "files"  # in RUN_RECORD: the files save() wrote, relative to the folder


def trial_dir(models_dir: Path, number: int) -> Path:
    return Path(models_dir) / f"trial-{number:04d}"


def save(model, tokenizer, out: Path, run_info: dict) -> Path:
    """Save model (safetensors + config with id2label/label2id), tokenizer and the resolved run settings, which list
    the files written (`files`): a card folder copies those and nothing else that lands in the folder later.

    Written to a temporary folder and renamed, so a crash never leaves a half-written checkpoint behind. Any
    failure (a full disk surfaces as safetensors' own error, not an OSError) fails the trial with one line.
    """
    out = Path(out)
    try:
        with timing.phase("saving"), files.atomic_dir(out) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            names = sorted(f.relative_to(tmp).as_posix() for f in tmp.rglob("*") if f.is_file())
            (tmp / RUN_RECORD).write_text(json.dumps({**run_info, FILES: names}, indent=1, sort_keys=True))
    except Exception as e:
        raise CheckpointError(f"cannot save the student to {out}: {first_line(e)}; free disk space or make "
                              f"[study] output_dir writable") from e
    return out


def problem(folder: Path, study_uid: Optional[str], number: int) -> Optional[str]:
    """Why `folder` is not trial `number`'s complete checkpoint of the study `study_uid`, or None when it is."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        return "it is missing (only the best are kept)"
    if not any((folder / w).is_file() for w in WEIGHTS):
        return "its weights are missing (model.safetensors)"
    run = files.read_json(folder / RUN_RECORD)
    if run is None:
        return f"its {RUN_RECORD} is missing or unreadable"
    if run.get("trial") != number or (study_uid and run.get("study_uid") not in (None, study_uid)):
        return (f"it holds trial {run.get('trial')} of study {run.get('study')!r}"
                f"{' (another instance of that name)' if run.get('study') else ''}, not this trial")
    if not isinstance(run.get(FILES), list):
        return f"its {RUN_RECORD} does not list the files searcher wrote (it was saved by an older searcher)"
    missing = [name for name in run[FILES] if not (folder / name).is_file()]
    if missing:
        return f"its {missing[0]} is missing"
    return None


def written(folder: Path) -> list[str]:
    """The files save() wrote into a checkpoint that `problem` accepted, relative to it."""
    return list(files.read_json(Path(folder) / RUN_RECORD)[FILES])


def keep_set(study: optuna.Study, keep_best: int) -> set[int]:
    keep = {t.number for t in ranked(study)[:keep_best]}
    if len(study.directions) > 1:
        keep |= {t.number for t in pareto(study)}
    return keep


def retain(study: optuna.Study, models_dir: Path, keep_best: int) -> list[int]:
    """Delete the checkpoints of finished trials outside the keep set. Returns the trial numbers removed."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return []
    removed = []
    with files.lock(models_dir / ".retain"):
        trials = {t.number: t for t in study.get_trials(deepcopy=False)}
        keep = keep_set(study, keep_best)
        for path in sorted(models_dir.iterdir()):
            m = DIR_PATTERN.match(path.name)
            if not m or not path.is_dir():
                continue
            number = int(m.group(1))
            trial = trials.get(number)
            if trial is None or not trial.state.is_finished() or number in keep:
                continue
            if trial.state == TrialState.COMPLETE and trial.user_attrs.get(MODEL_DIR) not in (None, str(path)):
                continue  # saved somewhere else: not ours to judge
            shutil.rmtree(path, ignore_errors=True)
            removed.append(number)
    if removed:
        log.info("checkpoints: removed %s (keeping the best %d)", ", ".join(f"trial {n}" for n in removed), keep_best)
    return removed
