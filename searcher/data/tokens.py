"""The token cache: each split tokenized once per (data, tokenizer, max_length) and kept on disk as ragged arrays.

No trial ever re-tokenizes: workers starting together tokenize once under a file lock and the others read. A cached
file is validated on read (keys, shapes, row count); a damaged one is rebuilt with one log line.
This module knows nothing of teachers, students or Optuna.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from searcher import files
from searcher.data.loading import Split

log = logging.getLogger(__name__)

KEYS = ("input_ids", "offsets", "labels", "pad_token_id")


@dataclass(frozen=True)
class Encoded:
    """A tokenized split as ragged arrays: example i is input_ids[offsets[i]:offsets[i+1]]."""

    input_ids: np.ndarray  # int32, all examples concatenated
    token_type_ids: Optional[np.ndarray]  # int8, same layout; None when the tokenizer has none (DistilBERT)
    offsets: np.ndarray  # int64, N + 1
    labels: np.ndarray  # as the split has them: int64 (N,), float32 (N,) or float32 (N, labels)
    pad_token_id: int

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def rows(self, start: int, stop: int) -> "Encoded":
        """Examples start..stop-1 as their own Encoded (a view of the token arrays)."""
        a, b = int(self.offsets[start]), int(self.offsets[stop])
        tti = self.token_type_ids[a:b] if self.token_type_ids is not None else None
        return Encoded(self.input_ids[a:b], tti, self.offsets[start:stop + 1] - a, self.labels[start:stop],
                       self.pad_token_id)

    def take(self, indices: np.ndarray) -> "Encoded":
        """The chosen examples, in that order, as a new Encoded."""
        indices = np.asarray(indices, dtype=np.int64)
        lengths = self.lengths[indices]
        offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        # token positions, row after row: each row's start in the source, shifted to its place in the result
        positions = np.repeat(self.offsets[indices] - offsets[:-1], lengths) + np.arange(offsets[-1])
        tti = self.token_type_ids[positions] if self.token_type_ids is not None else None
        return Encoded(self.input_ids[positions], tti, offsets, self.labels[indices], self.pad_token_id)


def concat(parts: list[Encoded]) -> Encoded:
    """One Encoded holding the examples of `parts` in order (labels included)."""
    sizes = np.array([int(p.offsets[-1]) for p in parts], dtype=np.int64)
    shifts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    offsets = np.concatenate([[0]] + [p.offsets[1:] + shift for p, shift in zip(parts, shifts)])
    with_types = [p.token_type_ids is not None for p in parts]
    tti = None
    if any(with_types):
        tti = np.concatenate([p.token_type_ids if p.token_type_ids is not None else
                              np.zeros(int(p.offsets[-1]), np.int8) for p in parts])
    return Encoded(np.concatenate([p.input_ids for p in parts]), tti, offsets.astype(np.int64),
                   np.concatenate([p.labels for p in parts]), parts[0].pad_token_id)


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
    """Tokenize a split once; later calls (any process) read the cached arrays. `key` names the split's content."""
    if cache_dir is None:
        return _tokenize(split, tokenizer, max_length)
    path = Path(cache_dir) / "tokens" / f"{files.cache_key([key, tokenizer_fingerprint(tokenizer), max_length])}.npz"

    def build() -> Encoded:
        log.info("data: tokenizing %s (%d rows) once; cached in %s", key.split(":")[-1], len(split), path)
        enc = _tokenize(split, tokenizer, max_length)
        arrays = {"input_ids": enc.input_ids, "offsets": enc.offsets, "labels": enc.labels,
                  "pad_token_id": np.array(enc.pad_token_id)}
        if enc.token_type_ids is not None:
            arrays["token_type_ids"] = enc.token_type_ids
        files.save_npz(path, arrays)
        return enc

    # workers starting together tokenize once; the others wait and read
    return files.cached("data: token cache", path, lambda: _read(path, split), build, log)


def _read(path: Path, split: Split) -> Optional[Encoded]:
    """The cached arrays (None: not cached); raises when they are not whole or not `split`'s (rows, labels)."""
    if not path.is_file():
        return None
    files.check_seal(path)
    with np.load(path) as z:
        if not set(KEYS) <= set(z.files):
            raise ValueError(f"missing {sorted(set(KEYS) - set(z.files))}")
        enc = Encoded(z["input_ids"], z["token_type_ids"] if "token_type_ids" in z.files else None,
                      z["offsets"], z["labels"], int(z["pad_token_id"]))
    n = len(split)
    total = int(enc.offsets[-1]) if len(enc.offsets) else -1
    if (len(enc.offsets) != n + 1 or len(enc.labels) != n or total != len(enc.input_ids)
            or (enc.token_type_ids is not None and len(enc.token_type_ids) != total)
            or np.any(np.diff(enc.offsets) < 0) or enc.labels.dtype != split.labels.dtype
            or not np.array_equal(enc.labels, split.labels, equal_nan=enc.labels.dtype.kind == "f")):
        raise ValueError("its rows do not match the split")
    return enc


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
    return Encoded(flat, tti, offsets, np.asarray(split.labels), int(pad))
