"""Teacher-labelled text: the transfer set and augmented copies of the training sentences, and the training set a
trial draws from them (Tang et al. 2019; TinyBERT's data augmentation).

Both are labelled once by the cached teacher (searcher.teachers.loading.cached_extra_logits: float16, memory-mapped), so a
larger transfer set costs one teacher pass, not one per step per trial. Augmented copies are built for the most
copies any trial can ask for (the top of [search] augment), copy-major and prefix-stable (searcher.data.augment), with
copies identical to their sentence or to an earlier copy dropped; a trial with `augment = k` trains on the copies
numbered below k, so trials with different k share one cache.

Rows that only the teacher labels carry the label UNLABELED: the loss gives them the distillation term alone, with
the same (1 - alpha) weight as on labelled rows (searcher.train.distill.kd_loss).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np

from searcher import files
from searcher.data import augment
from searcher.data.rows import StackedLogits
from searcher.config import StudyConfig
from searcher.data.loading import Split, Task
from searcher.errors import ConfigError
from searcher.hyperparams import extent
from searcher.data.tokens import Encoded, concat

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeacherLabelled:
    """Rows only the teacher labels, with its logits (rows x labels, float16, memory-mapped)."""

    name: str  # "transfer" or "augmented"
    split: Split
    logits: np.ndarray
    content: str  # what the rows are made of (keys their token and logit caches)
    copy: Optional[np.ndarray] = None  # augmented rows: which copy (0..K-1) each row is

    def rows_for(self, k: int) -> np.ndarray:
        """The rows a trial with `augment = k` uses (all of a transfer set)."""
        if self.copy is None:
            return np.arange(len(self.split))
        return np.arange(int(np.searchsorted(self.copy, k, side="left")))  # copy-major: a prefix


def max_copies(config: StudyConfig) -> int:
    return int(extent(config.search.augment)[1])


def settings(config: StudyConfig, mask_token: str) -> augment.AugmentSettings:
    a = config.data.augment
    try:
        return augment.AugmentSettings(seed=config.study.seed, p_mask=a.p_mask, p_swap=a.p_swap, p_ngram=a.p_ngram,
                                       ngram_range=(min(a.ngram_range), max(a.ngram_range)), mask_token=mask_token)
    except ValueError as e:
        raise ConfigError(f"{config.path}: [data.augment] {e}") from e


def augmented(config: StudyConfig, task: Task, mask_token: str) -> tuple[Optional[Split], Optional[np.ndarray], str]:
    """(the augmented copies as a split, the copy number of each row, what they are made of) or (None, None, "")."""
    k = max_copies(config)
    if k == 0:
        return None, None, ""
    s = settings(config, mask_token)
    texts = augment.copies(task.train.texts, k, s)
    fresh = np.asarray(augment.fresh_rows(task.train.texts, texts), dtype=np.int64)
    n = len(task.train)
    split = Split(tuple(tuple(col[i] for i in fresh) for col in texts), task.unlabeled(len(fresh)))
    content = files.cache_key([task.fingerprint, k, s.p_mask, s.p_swap, s.p_ngram, list(s.ngram_range),
                               s.mask_token, s.seed], 20)
    if not len(fresh):
        a = config.data.augment
        log.warning("data: [data.augment] gave 0 distinct copies (every copy equals its sentence; p_mask = %g, p_swap "
                    "= %g, p_ngram = %g), so the study trains on the labelled rows alone; raise a probability, or set "
                    "[search] augment = 0", a.p_mask, a.p_swap, a.p_ngram)
        return None, None, ""
    log.info("data: %d augmented copies of %d training sentences (%d distinct, up to %d per sentence)", len(texts[0]),
             n, len(fresh), k)
    return split, fresh // n, content


def teacher_labelled(config: StudyConfig, task: Task, teacher, mask_token: Optional[str]) -> list[TeacherLabelled]:
    """The transfer set and the augmented copies of this study, labelled by the study's teacher (searcher.teachers:
    one, or the ensemble), cached."""
    extras = []
    if task.transfer is not None:
        logits = teacher.extra_logits("transfer", task.transfer, task.transfer_fingerprint)
        extras.append(TeacherLabelled("transfer", task.transfer, logits, task.transfer_fingerprint))
    if max_copies(config):
        if not mask_token:
            raise ConfigError(f"{config.path}: [search] augment masks words with the teacher tokenizer's mask token, "
                              f"and this tokenizer has none; set augment = 0 or [data.augment] p_mask = 0")
        split, copy, content = augmented(config, task, mask_token)
        if split is None:
            return extras
        logits = teacher.extra_logits("augmented", split, content)
        extras.append(TeacherLabelled("augmented", split, logits, content, copy))
    return extras


def training_set(train: Encoded, train_logits: np.ndarray, extras: list[TeacherLabelled], encoded: dict[str, Encoded],
                 k: int) -> tuple[Encoded, object, dict]:
    """What a trial trains on: the labelled train split, then every transfer row, then the augmented copies below
    `k`, with the teacher's logits for each row; and the sizes of each part (for records and cards)."""
    sizes = {"labeled": len(train), "transfer": 0, "augmented": 0}
    if not extras:
        return train, train_logits, sizes
    parts, logits = [train], [train_logits]
    for extra in extras:
        rows = extra.rows_for(k)
        if not len(rows):
            continue
        enc = encoded[extra.name]
        parts.append(enc if len(rows) == len(enc) else enc.rows(0, len(rows)))
        logits.append(extra.logits[: len(rows)] if len(rows) < len(extra.logits) else extra.logits)
        sizes[extra.name] = len(rows)
    if len(parts) == 1:
        return train, train_logits, sizes
    return concat(parts), StackedLogits(logits), sizes
