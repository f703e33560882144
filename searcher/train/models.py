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


# encoders whose only use of the 2D padding mask is transformers' create_bidirectional_mask, which returns a 4D mask
# as it is given (checked in transformers 5.x: bert, roberta, xlm-roberta, electra, distilbert). ModernBERT is not
# among them: it builds a sliding-window mask of its own from the 2D one.
PREPARED_MASK_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "electra", "distilbert"})


def forward_inputs(model, inputs: dict) -> dict:
    """`inputs` for a training step's forward, with the attention mask already in the 4D boolean form sdpa takes.

    Given the 2D mask, transformers asks `padding_mask.all()` on every forward (to drop the mask when nothing is
    padded): on a GPU that is a device-to-host sync per step. The 4D mask is returned by transformers as it is, and
    is the mask transformers would build (True where a key may be attended to), so the results are the same; other
    models and attention implementations get the inputs unchanged."""
    cfg = model.config
    mask = inputs.get("attention_mask")
    if (mask is None or mask.ndim != 2 or cfg.model_type not in PREPARED_MASK_TYPES
            or getattr(cfg, "is_decoder", False) or getattr(cfg, "_attn_implementation", None) != "sdpa"):
        return inputs
    width = mask.shape[1]
    return {**inputs, "attention_mask": mask.bool()[:, None, None, :].expand(-1, 1, width, width)}


def ready_for_compile(model) -> None:
    """transformers installs its output-capturing hooks at the first forward that asks for hidden states, under a
    threading lock torch.compile cannot trace (a graph break in every compiled step of a layer-wise loss): install
    them before the first compiled forward. Does nothing where transformers has no such hooks."""
    try:
        from transformers.utils.output_capturing import maybe_install_capturing_hooks
    except ImportError:
        return
    maybe_install_capturing_hooks(model)
