"""Transfer-set augmentation: augmented copies of training sentences for the teacher to label with soft logits.

The procedure is Tang et al. 2019 ("Distilling Task-Specific Knowledge from BERT into Simple Neural Networks",
section 3.3): one pass over the words, one uniform draw u per word -- u < p_mask: the word becomes the mask token;
p_mask <= u < p_mask + p_swap: it is swapped for another word of the training vocabulary (the paper swaps within a
POS tag; there is no POS tagger here, so the whole vocabulary stands in for the tag) -- then, with probability
p_ngram, only a random n-gram of the result is kept (n uniform in ngram_range, capped by the length).

Copies are deterministic and prefix-stable: copy j of example i is drawn from its own generator seeded by
(seed, i, j, column), so a cache built with K copies holds, as its first k * N rows, exactly what a build with k
copies would hold. `remove_overlap` keeps evaluation sentences out of any transfer set.

This module is pure Python on plain strings: it knows nothing of tokenizers, teachers, caches or Optuna.
"""

from __future__ import annotations

import hashlib
import random
import re
import unicodedata
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

Columns = Sequence[Sequence[str]]  # the shape of Split.texts: one column (sentences) or two (pairs), N strings each


@dataclass(frozen=True, kw_only=True)
class AugmentSettings:
    """How to augment. `mask_token` is the student tokenizer's mask token, so "[MASK]" is read as one token."""

    seed: int
    p_mask: float = 0.1
    p_swap: float = 0.1
    p_ngram: float = 0.25
    ngram_range: tuple[int, int] = (1, 5)
    mask_token: str = "[MASK]"

    def __post_init__(self):
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"seed = {self.seed!r} must be an integer")
        for name in ("p_mask", "p_swap", "p_ngram"):
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1
            if not ok:  # also catches NaN, which fails 0 <= value
                raise ValueError(f"{name} = {value!r} is out of range; it must be a number in [0, 1]")
        if self.p_mask + self.p_swap > 1 + 1e-12:
            raise ValueError(f"p_mask + p_swap = {self.p_mask + self.p_swap:g} must be at most 1: masking and "
                             f"swapping are exclusive outcomes of one draw per word")
        rng = self.ngram_range
        if not (isinstance(rng, (tuple, list)) and len(rng) == 2
                and all(isinstance(n, int) and not isinstance(n, bool) for n in rng) and 1 <= rng[0] <= rng[1]):
            raise ValueError(f"ngram_range = {rng!r} must be two integers [low, high] with 1 <= low <= high")
        object.__setattr__(self, "ngram_range", tuple(rng))  # a TOML array arrives as a list
        if not isinstance(self.mask_token, str) or not self.mask_token or len(self.mask_token.split()) != 1:
            raise ValueError(f"mask_token = {self.mask_token!r} must be one non-empty word without whitespace "
                             f"(the tokenizer's mask token, e.g. \"[MASK]\")")


# ---------------------------------------------------------------------------------------------------------------
# Vocabulary


@dataclass(frozen=True)
class Vocabulary:
    """The training vocabulary (whitespace words), most frequent first, ties in word order.

    Swaps draw from it in proportion to frequency (the unigram distribution), as the paper does within a POS tag
    "to preserve the original training distribution". Uniform draws were rejected: SST-2 has 14.8k word types,
    most of them seen once (typos, rare names, hyphenated compounds), so a uniform swap would mostly insert words
    the student will almost never see at test time.
    """

    words: tuple[str, ...]
    counts: tuple[int, ...]
    _cumulative: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if len(self.words) != len(self.counts):
            raise ValueError(f"a vocabulary needs one count per word ({len(self.words)} words, "
                             f"{len(self.counts)} counts)")
        total, cumulative = 0, []
        for c in self.counts:
            total += c
            cumulative.append(total)
        object.__setattr__(self, "_cumulative", tuple(cumulative))

    def __len__(self) -> int:
        return len(self.words)

    def draw(self, rng: random.Random, avoid: str) -> str:
        """A word drawn by frequency, other than `avoid` (the paper replaces a word with *another* word): rejection
        sampling, which is exactly the unigram distribution renormalized without `avoid`. Gives `avoid` back only
        when the vocabulary has nothing else (or, with negligible probability, after many rejections)."""
        if not self.words:
            return avoid
        total = self._cumulative[-1]
        for _ in range(32):
            k = min(bisect_right(self._cumulative, rng.random() * total), len(self.words) - 1)
            if self.words[k] != avoid:
                return self.words[k]
        return avoid


def vocabulary(texts: Columns) -> Vocabulary:
    """The whitespace words of every column of `texts` (the Split.texts shape), sorted by frequency then word."""
    _check_columns(texts, "texts")
    counts = Counter(w for column in texts for text in column for w in text.split())
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return Vocabulary(tuple(w for w, _ in ordered), tuple(c for _, c in ordered))


# ---------------------------------------------------------------------------------------------------------------
# Augmentation
#
# Only `rng.random()` is ever called: Python guarantees that random() gives the same sequence for the same seed on
# every version, while choice/randrange/choices may change algorithm. A cache built under one Python must be the
# cache another Python would build. numpy Generators were rejected for the same reason (no stream guarantee across
# numpy versions for integers/choice) and because per-word scalar draws from numpy are slow.


def augment_one(words: Sequence[str], vocab: Vocabulary, settings: AugmentSettings,
                rng: random.Random) -> list[str]:
    """One augmented copy of a sentence given as words.

    The per-word draws come first and the n-gram draws after them, so the same generator state gives the same
    masked/swapped sentence whatever p_ngram is. Never empty unless `words` is.
    """
    p_mask = settings.p_mask
    p_edit = settings.p_mask + settings.p_swap
    mask = settings.mask_token
    out = []
    for w in words:
        u = rng.random()
        if u < p_mask:
            out.append(mask)
        elif u < p_edit:
            out.append(vocab.draw(rng, avoid=w))
        else:
            out.append(w)
    if out and rng.random() < settings.p_ngram:
        low, high = settings.ngram_range
        n = min(low + _below(rng, high - low + 1), len(out))  # drawn over the whole range, then capped
        start = _below(rng, len(out) - n + 1)
        out = out[start:start + n]
    return out if out else list(words)


def _below(rng: random.Random, n: int) -> int:
    """A uniform integer in [0, n) from one random() draw (see the note above on why not randrange)."""
    return min(int(rng.random() * n), n - 1)


def _generator(seed: int, example: int, copy: int, column: int) -> random.Random:
    # A hash of the whole key, not e.g. seed + example: nearby keys must not give related streams, and Random()
    # takes no tuples. Python's hash() is salted per process, so it cannot be used here.
    key = f"{seed}:{example}:{copy}:{column}".encode()
    return random.Random(int.from_bytes(hashlib.blake2b(key, digest_size=16).digest(), "big"))


def copies(split_texts: Columns, k: int, settings: AugmentSettings) -> tuple[tuple[str, ...], ...]:
    """`k` augmented copies of every example, in the Split.texts shape (one column per text column), copy-major:
    row `copy_row(i, j, N)` is copy j of example i, so the first k' <= k copies are the prefix `copy_prefix(k', N)`.

    Copy j of example i depends only on (settings, i, j, the example's text, and the vocabulary of split_texts),
    not on k. In sentence pairs each side gets its own generator, so the two sides are augmented independently.

    Copies equal to the original or to another copy are kept: the layout stays a plain (copy, example) grid, so a
    row's origin is arithmetic and a k-copy prefix is contiguous, and a duplicate costs only one teacher pass and
    some extra weight on its example. Drop them by row index if that weight matters (as `remove_overlap` drops
    rows). An example whose text is empty stays empty: there is nothing to fall back to.
    """
    _check_columns(split_texts, "split_texts")
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise ValueError(f"k = {k!r} copies must be an integer >= 0")
    vocab = vocabulary(split_texts)
    out = []
    for c, column in enumerate(split_texts):
        split_column = [text.split() for text in column]
        rows = []
        for j in range(k):
            for i, words in enumerate(split_column):
                if not words:
                    rows.append(column[i])
                    continue
                rows.append(" ".join(augment_one(words, vocab, settings, _generator(settings.seed, i, j, c))))
        out.append(tuple(rows))
    return tuple(out)


def fresh_rows(split_texts: Columns, copy_texts: Columns) -> list[int]:
    """Rows of `copy_texts` (as returned by `copies(split_texts, ...)`) that differ, word for word, from their own
    original and from every earlier row. A row's fate depends only on rows before it, so the fresh rows of a k-copy
    prefix are those of the K-copy cache that fall in the prefix. (On SST-2 with the default settings a quarter of
    the copies equal their original: mostly short phrases.)"""
    _check_columns(split_texts, "split_texts")
    _check_columns(copy_texts, "copy_texts")
    n = len(split_texts[0])
    if len(copy_texts) != len(split_texts) or (n == 0 and len(copy_texts[0])) or (n and len(copy_texts[0]) % n):
        raise ValueError(f"copy_texts ({len(copy_texts)} columns of {len(copy_texts[0])} rows) is not a set of "
                         f"copies of split_texts ({len(split_texts)} columns of {n} rows)")
    originals = [tuple(" ".join(text.split()) for text in row) for row in zip(*split_texts)]
    seen, kept = set(), []
    for r, row in enumerate(zip(*copy_texts)):
        key = tuple(" ".join(text.split()) for text in row)
        if key != originals[r % n] and key not in seen:
            kept.append(r)
        seen.add(key)
    return kept


def copy_row(example: int, copy: int, n_examples: int) -> int:
    """The row of copy `copy` of example `example` in the copy-major layout of `copies`."""
    if not (0 <= example < n_examples and copy >= 0):
        raise ValueError(f"example {example} / copy {copy} is outside the layout of {n_examples} examples")
    return copy * n_examples + example


def row_origin(row: int, n_examples: int) -> tuple[int, int]:
    """(example, copy) of a row in the copy-major layout of `copies`."""
    if row < 0 or n_examples <= 0:
        raise ValueError(f"row {row} is outside the layout of {n_examples} examples")
    copy, example = divmod(row, n_examples)
    return example, copy


def copy_prefix(k: int, n_examples: int) -> slice:
    """The rows holding the first `k` copies of every example: a contiguous prefix, whatever K the cache holds."""
    if k < 0 or n_examples < 0:
        raise ValueError(f"k = {k} and n_examples = {n_examples} must be >= 0")
    return slice(0, k * n_examples)


def _check_columns(texts: Columns, name: str) -> None:
    if isinstance(texts, str) or not texts or any(isinstance(col, str) for col in texts):
        raise ValueError(f"{name} must be a tuple of text columns (as Split.texts: one column, or two for "
                         f"sentence pairs), each a sequence of strings")
    if len({len(col) for col in texts}) != 1:
        raise ValueError(f"{name} has columns of different lengths {[len(col) for col in texts]}")


# ---------------------------------------------------------------------------------------------------------------
# Evaluation overlap
#
# What `normalize` catches: case (casefold), Unicode compatibility forms (NFKC: full-width letters, "…" -> "..."),
# curly quotes and apostrophes, any whitespace run, leading/trailing space, and spacing next to punctuation, so
# the tokenised style of SST-2 and other PTB-tokenised sets meets raw text: "it 's" = "it's", "does n't" =
# "doesn't", "ca n't" = "can't", "`` great '' , he said ." = "\"great\", he said.". Removing the space next to any
# punctuation can only equate texts that differ in that spacing, which are the same sentence; false positives cost
# one transfer row, a missed match leaks an evaluation sentence.
# What it does not catch: different words or spellings, accents (cafe vs café), PTB bracket tokens (-lrb-),
# HTML entities, an evaluation sentence inside a longer transfer text, a pair with its sides swapped, and near
# duplicates such as an augmented copy that differs from an evaluation sentence by one word.

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201b": "'", "\u201c": '"', "\u201d": '"',
                         "\u201e": '"', "`": "'"})
_PTB_QUOTES = re.compile(r"``|''")
_NT = re.compile(r"\s+(n't)\b")
_PUNCT_SPACE = re.compile(r"\s*([^\w\s])\s*")
PAIR_SEPARATOR = "\x1f"  # str.split() treats it as whitespace, so no normalized side can contain it


def normalize(text: str | Sequence[str]) -> str:
    """The key under which two texts count as the same sentence (see the comment above for what it catches).
    A pair (a sequence of texts) is its normalized sides joined by PAIR_SEPARATOR."""
    if not isinstance(text, str):
        return PAIR_SEPARATOR.join(normalize(side) for side in text)
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _PTB_QUOTES.sub('"', text).translate(_QUOTES)
    text = " ".join(text.split())
    text = _NT.sub(r"\1", text)
    return _PUNCT_SPACE.sub(r"\1", text)


def remove_overlap(transfer_texts: Columns, eval_texts_list: Sequence[Columns]) -> tuple[list[int], int]:
    """Transfer rows to keep: those whose normalized text equals no row of any evaluation split (validation,
    test). Returns (kept row indices in order, number removed). All splits must have the same number of columns."""
    _check_columns(transfer_texts, "transfer_texts")
    width = len(transfer_texts)
    seen = set()
    for n, eval_texts in enumerate(eval_texts_list):
        _check_columns(eval_texts, f"eval_texts_list[{n}]")
        if len(eval_texts) != width:
            raise ValueError(f"eval_texts_list[{n}] has {len(eval_texts)} text columns but the transfer set has "
                             f"{width}; compare splits of the same task")
        seen.update(normalize(row) for row in zip(*eval_texts))
    kept = [i for i, row in enumerate(zip(*transfer_texts)) if normalize(row) not in seen]
    return kept, len(transfer_texts[0]) - len(kept)
