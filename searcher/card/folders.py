"""Card folders: README.md (the model card), the student, its tokenizer and searcher_trial.json.

A folder is exactly what `searcher push` uploads, and it is written from stored records and a kept checkpoint only.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from importlib import metadata
from pathlib import Path
from typing import Optional

import optuna
from optuna.trial import FrozenTrial

from searcher import card, files, records
from searcher.records import checkpoints
from searcher.config import StudyConfig
from searcher.config.identity import distill_table
from searcher.errors import RefusedError, StudyError, first_line
from searcher.records.storage import ATTR_CONFIG, ATTR_DATASET, ATTR_TEACHER, ATTR_UID, ATTR_VERSIONS

MODEL_FILES_EXCLUDED = {"searcher_run.json"}


def trial_json(study: optuna.Study, trial: FrozenTrial, repo_id: Optional[str]) -> dict:
    """The machine-readable record that travels with the model (no paths of this machine, no tokens)."""
    r = records.TrialRecord.from_trial(trial)
    attrs = study.user_attrs
    teacher = {k: v for k, v in attrs.get(ATTR_TEACHER, {}).items() if k != "path"}
    if teacher.get("members"):  # an ensemble's teachers: no paths of this machine either
        teacher["members"] = [{k: v for k, v in m.items() if k != "path"} for m in teacher["members"]]
    return records.plain({
        "study": study.study_name, "trial": r.number, "trial_id": r.trial_id, "state": r.state,
        "repo_id": repo_id, "objectives": study.metric_names, "values": r.values, "params": r.params,
        "hyperparams": r.hyperparams, "metrics": r.metrics, "test_metrics": r.test_metrics, "history": r.history,
        "student": r.student, "batch": r.batch, "runtime": r.runtime, "recipe": r.recipe,
        "latency_ms": r.latency_ms, "size_mb": r.size_mb, "wall_time_s": r.wall_time_s, "teacher": teacher,
        "loss_terms": r.loss_terms, "distill": distill_table((attrs.get(ATTR_CONFIG) or {}).get("distill")),
        "dataset": attrs.get(ATTR_DATASET), "versions": attrs.get(ATTR_VERSIONS),
        "datetime_start": r.datetime_start, "datetime_complete": r.datetime_complete,
        "searcher_version": _version("searcher"),
    })


def _version(name: str) -> Optional[str]:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


RECORD = "searcher_trial.json"


def write_folder(study: optuna.Study, config: StudyConfig, trial: FrozenTrial, out: Path,
                 repo_id: Optional[str] = None, template: Optional[Path] = None, force: bool = False) -> Path:
    """README.md + model + tokenizer + searcher_trial.json: exactly what `searcher push` uploads.

    The checkpoint must be this trial's and whole, and is copied under the lock that retention deletes under, so a
    worker's cleanup can never leave half a folder. Only the files searcher wrote into it are copied (`_published`),
    and a symbolic link there is refused. An existing `out` is replaced only if searcher wrote everything
    in it (its record lists its files), unless `force`; the new folder is written beside it and renamed into place.
    """
    r = records.TrialRecord.from_trial(trial)
    folder = Path(r.model_dir) if r.model_dir else None
    text = card.card_text(study, config, trial, repo_id, template)
    out = Path(out)
    if out.exists() and not force:
        _check_ours(out)
    try:
        with files.atomic_dir(out) as tmp:
            with files.lock(Path(folder).parent / ".retain") if folder else contextlib.nullcontext():
                if folder is not None:
                    _refuse_link(folder, "", r)  # before its files are even looked at
                trouble = checkpoints.problem(folder, study.user_attrs.get(ATTR_UID), r.number) if folder else \
                    "it was never saved"
                if trouble:
                    raise StudyError(_missing(r, config, trouble))
                for name in _published(folder, r):
                    _refuse_link(folder, name, r)
                    (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(folder / name, tmp / name, follow_symlinks=False)
            (tmp / "README.md").write_text(text, encoding="utf-8")
            record = trial_json(study, trial, repo_id)
            record["files"] = sorted(str(f.relative_to(tmp)) for f in tmp.rglob("*") if f.is_file()) + [RECORD]
            (tmp / RECORD).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    except OSError as e:
        raise RefusedError(f"cannot write the card folder {out}: {first_line(e)}; pass --out a writable folder") from e
    return out


def _published(folder: Path, r: records.TrialRecord) -> list[str]:
    """What of a checkpoint folder is published, relative to it: the files searcher.records.checkpoints.save wrote (its
    record lists them) and the ONNX files searcher.records.export wrote (the trial's formats record names them). Nothing
    else: a file someone left there (a .env) is no part of the student."""
    names = [n for n in checkpoints.written(folder) if n not in MODEL_FILES_EXCLUDED]
    onnx = sorted(set((r.formats.get("files") or {}).values()) - set(names))
    for name in names + onnx:
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise RefusedError(f"the records of trial {r.number}'s checkpoint at {folder} name {name}, outside the "
                               f"folder; searcher never writes there: re-run the trial")
    missing = [name for name in onnx if not (folder / name).is_file()]
    if missing:
        raise StudyError(f"trial {r.number}'s checkpoint at {folder} cannot be carded: its {missing[0]} is missing; "
                         f"re-run the trial with [[enqueue]] and its params {r.params}")
    return names + onnx


def _refuse_link(folder: Path, name: str, r: records.TrialRecord) -> None:
    """A symbolic link (the trial folder, or a file or onnx/ in it) is refused, not followed: what it points at is
    not what searcher wrote, and copying it would publish whatever is there."""
    parts = Path(name).parts
    for path in [folder] + [folder.joinpath(*parts[:i]) for i in range(1, len(parts) + 1)]:
        if path.is_symlink():
            raise RefusedError(f"{path} is a symbolic link; searcher cards and publishes only the files it wrote "
                               f"there: put trial {r.number}'s own files back, or re-run the trial")


def _missing(r: records.TrialRecord, config: StudyConfig, trouble: str) -> str:
    if trouble.startswith("it is missing"):
        return (f"trial {r.number}'s student is no longer on disk (only the best {config.study.keep_best} are "
                f"kept); raise [study] keep_best, or re-run it with [[enqueue]] and its params {r.params}")
    return (f"trial {r.number}'s checkpoint at {r.model_dir} cannot be carded: {trouble}; re-run the trial with "
            f"[[enqueue]] and its params {r.params}")


def _check_ours(out: Path) -> None:
    """Refuse to replace a folder holding anything searcher did not write there."""
    record = files.read_json(out / RECORD) if out.is_dir() else None
    if record is not None and "files" not in record:
        return  # written by a searcher from before records listed their files
    listed = set((record or {}).get("files") or [])
    present = {str(f.relative_to(out)) for f in out.rglob("*") if f.is_file()} if out.is_dir() else {out.name}
    foreign = sorted(present - listed)
    if foreign:
        raise RefusedError(f"{out} holds files searcher did not write (e.g. {foreign[0]}); choose another --out, or "
                           f"pass --force to replace the folder")


def export(study: optuna.Study, config: StudyConfig, trial: Optional[int] = None, top: Optional[int] = None,
           pareto_front: bool = False, out: Optional[str] = None, template: Optional[str] = None,
           force: bool = False) -> list[Path]:
    chosen = records.select(study, trial=trial, top=top, pareto_front=pareto_front)
    base = Path(out) if out else config.output_dir / "cards"
    folders = []
    for t in chosen:
        repo_id = card.repo_id_for(config.hub.repo_id, config.study.name, t) if config.hub.repo_id else None
        folders.append(write_folder(study, config, t, base / f"trial-{t.number:04d}", repo_id,
                                    Path(template) if template else None, force=force))
    return folders
