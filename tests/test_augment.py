"""Transfer-set augmentation: the Tang et al. per-word pass and n-gram sampling, deterministic prefix-stable copies,
the copy-major layout, settings validation, and the evaluation-overlap filter."""

import os
import random
import subprocess
import sys
from collections import Counter
from dataclasses import replace

import pytest

from searcher.data import augment
from searcher.data.augment import AugmentSettings

WORDS = ["film", "plot", "good", "bad", "actor", "scene", "story", "dull", "bright", "music", "long", "short",
         "funny", "sad", "ending", "camera", "script", "role", "cast", "pace"]


def corpus(n=60, seed=0):
    """Sentences of 1 to 12 words, every length present, drawn from WORDS."""
    r = random.Random(seed)
    return tuple(" ".join(r.choice(WORDS) for _ in range(1 + i % 12)) for i in range(n))


def settings(**kw):
    base = dict(seed=7, p_mask=0.2, p_swap=0.2, p_ngram=0.3)
    base.update(kw)
    return AugmentSettings(**base)


VOCAB = augment.vocabulary((corpus(),))


# ---------------------------------------------------------------------------------------------------------------
# Settings


@pytest.mark.parametrize("kw, message", [
    ({"p_mask": 1.5}, r"p_mask = 1.5 is out of range; it must be a number in \[0, 1\]"),
    ({"p_swap": -0.1}, r"p_swap = -0.1 is out of range; it must be a number in \[0, 1\]"),
    ({"p_ngram": float("nan")}, r"p_ngram = nan is out of range"),
    ({"p_mask": True}, r"p_mask = True is out of range"),
    ({"p_mask": 0.6, "p_swap": 0.5}, r"p_mask \+ p_swap = 1.1 must be at most 1"),
    ({"ngram_range": (0, 5)}, r"ngram_range = \(0, 5\) must be two integers \[low, high\] with 1 <= low <= high"),
    ({"ngram_range": (4, 2)}, r"ngram_range = \(4, 2\) must be"),
    ({"ngram_range": (1, 2, 3)}, r"ngram_range = \(1, 2, 3\) must be"),
    ({"ngram_range": (1.0, 2)}, r"ngram_range = \(1.0, 2\) must be"),
    ({"mask_token": "[ MASK ]"}, r"mask_token = '\[ MASK \]' must be one non-empty word"),
    ({"mask_token": ""}, r"mask_token = '' must be one non-empty word"),
    ({"seed": "1"}, r"seed = '1' must be an integer"),
])
def test_settings_validation_names_the_field_and_range(kw, message):
    with pytest.raises(ValueError, match=message):
        settings(**kw)


def test_settings_accept_the_edges_and_a_toml_list():
    s = settings(p_mask=0.7, p_swap=0.3, p_ngram=1, ngram_range=[2, 2])
    assert s.ngram_range == (2, 2)
    assert AugmentSettings(seed=0) == AugmentSettings(seed=0, p_mask=0.1, p_swap=0.1, p_ngram=0.25,
                                                      ngram_range=(1, 5), mask_token="[MASK]")
    with pytest.raises(TypeError):
        AugmentSettings()  # the seed is the caller's study seed, never a silent default


# ---------------------------------------------------------------------------------------------------------------
# Vocabulary and the per-word pass


def test_vocabulary_is_sorted_by_frequency_then_word_over_all_columns():
    vocab = augment.vocabulary((("b a c", "a  b\ta"), ("d b", "a")))
    assert vocab.words == ("a", "b", "c", "d")
    assert vocab.counts == (4, 3, 1, 1)
    with pytest.raises(ValueError, match="tuple of text columns"):
        augment.vocabulary(["a b", "c"])  # a flat list of sentences, not columns


def augment_many(words, s, n, vocab=VOCAB, seed=0):
    r = random.Random(seed)
    return [augment.augment_one(words, vocab, s, r) for _ in range(n)]


@pytest.mark.parametrize("p_mask, p_swap", [(0.5, 0.2), (0.1, 0.3), (0.0, 0.6)])
def test_operation_rates_match_the_probabilities(p_mask, p_swap):
    words = WORDS[:10]
    outs = augment_many(words, settings(p_mask=p_mask, p_swap=p_swap, p_ngram=0), 2000)  # 20,000 words
    ops = Counter()
    for out in outs:
        assert len(out) == len(words)
        for before, after in zip(words, out):
            ops["mask" if after == "[MASK]" else "swap" if after != before else "keep"] += 1
    total = sum(ops.values())
    # the standard error of a rate over 20,000 words is at most 0.0035: 0.015 is over 4 of them
    assert ops["mask"] / total == pytest.approx(p_mask, abs=0.015)
    assert ops["swap"] / total == pytest.approx(p_swap, abs=0.015)
    assert ops["keep"] / total == pytest.approx(1 - p_mask - p_swap, abs=0.015)


def test_each_word_gets_its_own_draw():
    # with p_mask = 0.5 a 10-word sentence has k masks with binomial(10, 0.5) probability: all 11 counts occur
    # and none dominates; one draw per sentence would give only 0 or 10
    outs = augment_many(WORDS[:10], settings(p_mask=0.5, p_swap=0, p_ngram=0), 2000)
    masks = Counter(out.count("[MASK]") for out in outs)
    assert masks[5] / 2000 == pytest.approx(252 / 1024, abs=0.04)
    assert (masks[0] + masks[10]) / 2000 < 0.01


def test_swaps_give_other_vocabulary_words_by_frequency():
    vocab = augment.vocabulary((("a " * 900 + "b " * 90 + "c " * 10,),))
    outs = augment_many(["c"] * 10, settings(p_mask=0, p_swap=1, p_ngram=0), 500, vocab=vocab)
    swapped = Counter(w for out in outs for w in out)
    assert set(swapped) == {"a", "b"}  # never the word itself, never outside the vocabulary
    # the unigram distribution without "c": a = 900/990; a uniform draw would give 0.5
    assert swapped["a"] / 5000 == pytest.approx(900 / 990, abs=0.02)


def test_swaps_only_produce_vocabulary_words():
    words = ["zebra", "quokka"] + WORDS[:3]  # words outside the vocabulary are swapped for words inside it
    outs = augment_many(words, settings(p_mask=0, p_swap=1, p_ngram=0), 200)
    produced = {w for out in outs for w in out}
    assert produced <= set(VOCAB.words)
    assert len(produced) > 15


def test_ngram_is_a_contiguous_piece_of_the_masked_and_swapped_sentence():
    words = WORDS[:12]
    s_full = settings(p_mask=0.3, p_swap=0.3, p_ngram=0, ngram_range=(2, 4))
    s_gram = replace(s_full, p_ngram=1)
    lengths = Counter()
    for seed in range(400):
        # the per-word draws come first, so the same generator state gives the sentence the n-gram is cut from
        full = augment.augment_one(words, VOCAB, s_full, random.Random(seed))
        gram = augment.augment_one(words, VOCAB, s_gram, random.Random(seed))
        assert any(full[i:i + len(gram)] == gram for i in range(len(full) - len(gram) + 1)), (full, gram)
        lengths[len(gram)] += 1
    assert set(lengths) == {2, 3, 4}
    assert all(n / 400 == pytest.approx(1 / 3, abs=0.08) for n in lengths.values())
    unigram = replace(s_gram, p_mask=0, p_swap=0, ngram_range=(1, 1))
    starts = {augment.augment_one(words, VOCAB, unigram, random.Random(seed))[0] for seed in range(400)}
    assert starts == set(words)  # every start position, the first and the last included


def test_ngram_rate_and_length_cap():
    outs = augment_many(WORDS[:10], settings(p_mask=0, p_swap=0, p_ngram=0.25), 4000)
    assert sum(len(out) < 10 for out in outs) / 4000 == pytest.approx(0.25, abs=0.03)
    # n is drawn from the range and capped by the length: a 3-word sentence with n in 4..5 stays whole
    short = augment_many(["a", "b", "c"], settings(p_mask=0, p_swap=0, p_ngram=1, ngram_range=(4, 5)), 50)
    assert all(out == ["a", "b", "c"] for out in short)


def test_never_empty():
    s = settings(p_mask=0.4, p_swap=0.4, p_ngram=1, ngram_range=(1, 1))
    for n_words in (1, 2, 3):
        outs = augment_many(WORDS[:n_words], s, 300)
        assert all(len(out) == 1 for out in outs)
    texts = ("one", "two words", "", "   ")
    rows = augment.copies((texts,), 3, s)[0]
    for r, text in enumerate(rows):
        original = texts[r % 4]
        assert text.strip() if original.strip() else text == original
    assert augment.augment_one([], VOCAB, s, random.Random(0)) == []


# ---------------------------------------------------------------------------------------------------------------
# Copies: determinism, prefix stability, layout, pairs


def test_copies_are_deterministic_and_depend_on_the_seed():
    texts = (corpus(),)
    a = augment.copies(texts, 2, settings())
    assert a == augment.copies(texts, 2, settings())
    b = augment.copies(texts, 2, settings(seed=8))
    differ = sum(x != y for x, y in zip(a[0], b[0]))
    assert differ > len(a[0]) / 3


def test_copies_do_not_depend_on_the_process_hash_seed():
    code = ("import hashlib; from searcher.data import augment as a; "
            "rows = a.copies((tuple(f'w{i} x{i % 7} y z{i % 3} v' for i in range(40)),), 2, "
            "a.AugmentSettings(seed=3, p_mask=.2, p_swap=.3, p_ngram=.5)); "
            "print(hashlib.sha256(repr(rows).encode()).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": h},
                              capture_output=True, text=True, check=True).stdout for h in ("1", "2")}
    assert len(digests) == 1


def test_prefix_stability_first_k_copies_whatever_K():
    texts = (corpus(),)
    n = len(texts[0])
    four = augment.copies(texts, 4, settings())
    two = augment.copies(texts, 2, settings())
    assert len(four[0]) == 4 * n and len(two[0]) == 2 * n
    assert four[0][augment.copy_prefix(2, n)] == two[0]
    assert four[0][2 * n:] != four[0][:2 * n]  # copies 2 and 3 are new draws, not repeats of 0 and 1


def test_a_copy_depends_only_on_its_own_example():
    texts = list(corpus())
    before = augment.copies((tuple(texts),), 2, settings())[0]
    texts[5], texts[6] = texts[6], texts[5]  # same vocabulary; a shared stream would shift every later draw
    assert len(texts[5].split()) != len(texts[6].split())
    after = augment.copies((tuple(texts),), 2, settings())[0]
    n = len(texts)
    changed = {augment.row_origin(r, n)[0] for r in range(2 * n) if before[r] != after[r]}
    assert changed == {5, 6}


def test_copy_major_layout():
    n, k = 5, 3
    rows = [augment.copy_row(i, j, n) for j in range(k) for i in range(n)]
    assert rows == list(range(n * k))
    assert all(augment.row_origin(augment.copy_row(i, j, n), n) == (i, j) for i in range(n) for j in range(k))
    assert augment.copy_prefix(2, n) == slice(0, 10)
    with pytest.raises(ValueError, match="outside the layout"):
        augment.copy_row(5, 0, n)
    # and copies() follows it: masking every word keeps each row as long as its example, all lengths distinct
    texts = tuple(" ".join(WORDS[:m]) for m in (3, 1, 4, 2, 5))
    out = augment.copies((texts,), k, settings(p_mask=1, p_swap=0, p_ngram=0))[0]
    for r, text in enumerate(out):
        i, _ = augment.row_origin(r, n)
        assert text == " ".join(["[MASK]"] * len(texts[i].split()))


def test_copies_equal_to_the_original_are_kept():
    texts = ("a b c", "d e", "a b c")
    out = augment.copies((texts,), 3, settings(p_mask=0, p_swap=0, p_ngram=0))[0]
    assert out == texts * 3  # the grid stays whole; fresh_rows is how a caller drops them


def test_fresh_rows_drop_repeats_and_are_prefix_stable():
    texts = (("a b c", "d e", "f"), ("x", "y z", "w"))
    rows = (("a b c", "d", "f", "[MASK] b c", "d", "f ", "[MASK] b c", "e", "g"),
            ("x", "y z", "w", "x", "y z", "w", "x", "y", "w"))
    # rows 0 and 2 are their originals, 5 too (a trailing space aside); 4 repeats 1 and 6 repeats 3
    assert augment.fresh_rows(texts, rows) == [1, 3, 7, 8]
    assert augment.fresh_rows(texts, tuple(col[:6] for col in rows)) == [1, 3]
    with pytest.raises(ValueError, match="is not a set of copies"):
        augment.fresh_rows(texts, tuple(col[:7] for col in rows))
    real = (corpus(),)
    four = augment.copies(real, 4, settings())
    two = augment.copies(real, 2, settings())
    fresh4 = augment.fresh_rows(real, four)
    assert [r for r in fresh4 if r < 2 * len(real[0])] == augment.fresh_rows(real, two)
    assert 0 < len(fresh4) < len(four[0])


def test_pairs_are_augmented_on_both_sides_independently():
    side = corpus()
    out = augment.copies((side, side), 2, settings(p_mask=0.5, p_swap=0, p_ngram=0))
    assert len(out) == 2 and len(out[0]) == len(out[1]) == 2 * len(side)
    first_masked = sum("[MASK]" in t for t in out[0])
    second_masked = sum("[MASK]" in t for t in out[1])
    assert first_masked > len(out[0]) / 2 and second_masked > len(out[1]) / 2
    # identical sides with shared draws would be masked identically; independent draws rarely are, except in
    # short sentences (a 1-word side matches with probability 1/2)
    same = sum(a == b for a, b in zip(out[0], out[1]) if len(a.split()) >= 4)
    long_rows = sum(len(a.split()) >= 4 for a in out[0])
    assert same < long_rows / 4


def test_copies_rejects_bad_input():
    with pytest.raises(ValueError, match="k = -1 copies"):
        augment.copies((corpus(),), -1, settings())
    with pytest.raises(ValueError, match="columns of different lengths"):
        augment.copies((("a", "b"), ("c",)), 1, settings())
    assert augment.copies((("a", "b"),), 0, settings()) == ((),)


# ---------------------------------------------------------------------------------------------------------------
# Evaluation overlap


@pytest.mark.parametrize("a, b", [
    ("A Good  Film\t", "a good film"),
    ("it 's a good film .", "It's a good film."),
    ("it does n't work , sadly", "It doesn't work, sadly"),
    ("you ca n't miss it", "you can't miss it"),
    ("`` great '' , he said .", "\u201cGreat\u201d, he said."),
    ("it\u2019s ＦＩＮＥ …", "it's fine..."),
])
def test_normalize_equates_spacing_case_and_tokenised_style(a, b):
    assert augment.normalize(a) == augment.normalize(b)


@pytest.mark.parametrize("a, b", [
    ("a good film", "a bad film"),
    ("a goodfilm", "a good film"),  # spacing between words still counts
    ("cafe", "café"),  # not caught: documented
])
def test_normalize_keeps_different_texts_apart(a, b):
    assert augment.normalize(a) != augment.normalize(b)


def test_normalize_pairs_cannot_collide_across_the_separator():
    assert augment.normalize(("a b", "c")) != augment.normalize(("a", "b c"))
    assert augment.normalize(("a\x1fb",)) != augment.normalize(("a", "b"))
    assert augment.normalize(("A  b", "C")) == augment.normalize(("a b", "c"))
    assert augment.normalize(("solo",)) == augment.normalize("solo")


def test_remove_overlap_drops_exact_and_variant_matches_and_counts_them():
    validation = (("a good film", "it 's dull ."),)
    test = (("the end",),)
    transfer = (("a good film", "A  GOOD film ", "a good movie", "It's dull.", "the end", "the end again", "film"),)
    kept, removed = augment.remove_overlap(transfer, [validation, test])
    assert kept == [2, 5, 6]
    assert removed == 4
    assert augment.remove_overlap(transfer, []) == (list(range(7)), 0)


def test_remove_overlap_on_pairs():
    validation = (("a man sleeps", "a dog runs"), ("a person rests", "an animal moves"))
    transfer = (("A man sleeps", "a man sleeps", "a dog runs", "a person rests"),
                ("a person  rests", "a person runs", "an animal moves", "a man sleeps"))
    kept, removed = augment.remove_overlap(transfer, [validation])
    assert (kept, removed) == ([1, 3], 2)  # row 3 is a validation pair with its sides swapped: not caught
    with pytest.raises(ValueError, match="has 1 text columns but the transfer set has 2"):
        augment.remove_overlap(transfer, [(("a man sleeps",),)])


def test_remove_overlap_after_copies_keeps_evaluation_sentences_out():
    train = (("a fine film", "a dull film"),)
    validation = (("[MASK] fine film",),)
    out = augment.copies(train, 60, settings(p_mask=0.5, p_swap=0, p_ngram=0))
    assert "[MASK] fine film" in out[0]
    kept, removed = augment.remove_overlap(out, [validation])
    assert removed == out[0].count("[MASK] fine film")
    assert "[MASK] fine film" not in {out[0][r] for r in kept}
