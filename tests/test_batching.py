"""Batches: every example once per epoch, length grouping, micro-batches, dynamic padding."""

import numpy as np

from conftest import make_tokenizer
from searcher.train import batching
from searcher import data
from searcher.data import tokens


def test_collate_pads_dynamically():
    tok = make_tokenizer()
    split = data.Split((("good", "good film very dull and boring"),), np.array([1, 0]))
    enc = tokens.encode(split, tok, 32, None, "")
    batch = batching.collate(enc, np.array([0]))
    assert batch["input_ids"].shape == (1, 3)  # [CLS] good [SEP]: padded to its own length only
    both = batching.collate(enc, np.array([0, 1]))
    assert both["input_ids"].shape == (2, 8) and both["attention_mask"][0].sum() == 3


def test_micro_batches_cover_the_batch_exactly():
    lengths = np.array([5, 1, 9, 3, 3, 7, 2])
    batch = np.array([6, 0, 2, 5, 1])
    parts = list(batching.micro_batches(batch, lengths, 2))
    assert sorted(np.concatenate(parts).tolist()) == sorted(batch.tolist())
    assert [len(p) for p in parts] == [2, 2, 1]
    assert [lengths[p].tolist() for p in parts] == [[1, 2], [5, 7], [9]]  # similar lengths together


def test_epoch_batches_visit_every_example_once():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 50, size=1000)
    for group in (True, False):
        batches = batching.epoch_batches(lengths, 64, np.random.default_rng(1), group)
        flat = np.concatenate(batches)
        assert sorted(flat.tolist()) == list(range(1000))
        assert all(len(b) == 64 for b in batches[:-1]) or group
    grouped = batching.epoch_batches(lengths, 64, np.random.default_rng(1), True)
    plain = batching.epoch_batches(lengths, 64, np.random.default_rng(1), False)
    padding = lambda bs: sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in bs)  # noqa: E731
    assert padding(grouped) < padding(plain) / 3
