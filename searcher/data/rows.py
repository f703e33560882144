"""Row containers: arrays indexed by a training set's row number, whatever they are made of.

A trial's training set is the labelled train split followed by teacher-labelled text (searcher.data.transfer); its
per-row arrays (the teacher's logits) are stacked here without copying the memory-mapped parts into memory.
"""

from __future__ import annotations

import numpy as np


class StackedLogits:
    """Several row arrays as one, indexed by row number: the train split's teacher logits (in memory) followed by the
    memory-mapped logits of teacher-labelled text, without copying the large ones into memory."""

    def __init__(self, parts: list):
        self.parts = [p for p in parts if len(p)]
        self.ends = np.cumsum([len(p) for p in self.parts])
        self.width = self.parts[0].shape[1]

    def __len__(self) -> int:
        return int(self.ends[-1])

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        which = np.searchsorted(self.ends, rows, side="right")
        out = np.empty((len(rows), self.width), dtype=np.float32)
        for part in np.unique(which):
            mask = which == part
            start = self.ends[part - 1] if part else 0
            out[mask] = self.parts[part][rows[mask] - start]
        return out


