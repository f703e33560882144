"""What a distillation loss reads from a model's forward pass (searcher.losses.Outputs): the hidden states of the
layers it asked for, and each attention layer's queries, keys and values computed through the layer's own
projections from the hidden states below it. That works under sdpa attention, whose `output_attentions` is empty.

Students and teachers are read the same way; knows nothing of caches or of the loss formulas.
"""

from __future__ import annotations

import re
from typing import Sequence

from searcher.errors import ConfigError
from searcher.losses import Outputs, Side


# model types whose self-attention projections `projections` finds (a pretrained student is checked by its type)
ATTENTION_MODELS = ("bert", "roberta", "xlm-roberta", "camembert", "electra", "distilbert")


# the self-attention projections of layer i (0-based), by architecture: BERT, RoBERTa, ELECTRA, ... and DistilBERT
_PROJECTIONS = (
    (r"(?:^|\.)encoder\.layer\.{i}\.attention\.self\.", ("query", "key", "value")),
    (r"(?:^|\.)transformer\.layer\.{i}\.attention\.", ("q_lin", "k_lin", "v_lin")),
)


def projections(model, layer: int):
    """(query, key, value) Linear modules of attention layer `layer` (1-based), or None when the model has none
    that searcher can find (then attention-based losses cannot use it)."""
    modules = dict(model.named_modules())
    for pattern, names in _PROJECTIONS:
        prefix = re.compile(pattern.format(i=layer - 1))
        for name in modules:
            m = prefix.search(name + ".")
            if m and name.endswith(names[0]):
                base = name[: -len(names[0])]
                found = tuple(modules.get(base + n) for n in names)
                if all(f is not None for f in found):
                    return found
    return None


def check_attention(model, layers: Sequence[int], what: str) -> None:
    """Refuse, before training, a model whose self-attention projections searcher cannot reach."""
    missing = [layer for layer in layers if projections(model, layer) is None]
    if missing:
        raise ConfigError(f"{what} ({type(model).__name__}) has no self-attention query/key/value projections that "
                          f"searcher can read (layer {missing[0]}); the attention and MiniLM losses need a BERT-, "
                          f"RoBERTa- or DistilBERT-like model: remove them from [distill] losses for this model")


def heads_of(model) -> int:
    cfg = model.config
    return int(getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_heads", 1))


def hidden_layers(needs: Side) -> set[int]:
    """The hidden states a side must produce: its own hidden layers, and the input (layer - 1) of each attention
    layer, from which that layer's queries, keys and values are computed."""
    return set(needs.hidden) | {layer - 1 for layer in needs.attention}


def outputs(model, hidden_states: Sequence, logits, mask, needs: Side) -> Outputs:
    """A model's Outputs from its forward pass: the hidden states it was asked for, and Q/K/V of the attention
    layers through its own projections (gradients flow where the model trains)."""
    out = Outputs(logits=logits, mask=mask, heads=heads_of(model))
    for layer in needs.hidden:
        out.hidden[layer] = hidden_states[layer].float()
    for layer in needs.attention:
        q, k, v = projections(model, layer)
        x = hidden_states[layer - 1]
        out.attention[layer] = (q(x).float(), k(x).float(), v(x).float())
    return out
