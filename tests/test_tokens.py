"""The token cache: once per (data, tokenizer, max_length); damaged files are rebuilt, not trusted."""

import numpy as np

from conftest import make_tokenizer
from searcher import data
from searcher.data import tokens
from searcher.config import load_study


def test_tokens_are_cached_on_disk(world, tmp_path, monkeypatch):
    task = data.load_task(load_study(world.study(tmp_path)))
    tok = make_tokenizer()
    calls = []
    real = tokens._tokenize
    monkeypatch.setattr(tokens, "_tokenize", lambda *a: calls.append(1) or real(*a))
    first = tokens.encode(task.train, tok, 32, tmp_path / "cache", "k")
    second = tokens.encode(task.train, tok, 32, tmp_path / "cache", "k")
    assert len(calls) == 1
    assert np.array_equal(first.input_ids, second.input_ids) and np.array_equal(first.offsets, second.offsets)
    tokens.encode(task.train, tok, 16, tmp_path / "cache", "k")  # another max_length is another cache entry
    assert len(calls) == 2
