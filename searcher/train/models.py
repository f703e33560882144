"""Classifiers as transformers loads them: from_pretrained without the new-head warning, and a model's shape.

Students (searcher.train.student) and teachers (searcher.teachers) are both loaded through here.
"""

from __future__ import annotations

from typing import Optional


def shape(model) -> dict:
    """Layers, hidden size, heads and parameter count of a model (JSON-safe)."""
    cfg = model.config
    return {
        "layers": int(getattr(cfg, "num_hidden_layers", getattr(cfg, "n_layers", 0)) or 0),
        "hidden": int(getattr(cfg, "hidden_size", getattr(cfg, "dim", 0)) or 0),
        "heads": int(getattr(cfg, "num_attention_heads", getattr(cfg, "n_heads", 0)) or 0),
        "params": int(model.num_parameters()),
    }


def load_classifier(path_or_id: str, revision: Optional[str] = None, **kwargs):
    """(model, tokenizer) through from_pretrained, without the "newly initialized classifier" warning that a new
    head always triggers here (a base teacher or a pretrained student gets one on purpose)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path_or_id, revision=revision, **kwargs)
        return model, AutoTokenizer.from_pretrained(path_or_id, revision=revision)
    finally:
        hf_logging.set_verbosity(verbosity)
