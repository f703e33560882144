"""The hyperparameters of a trial, each declared once: name, type, default, allowed values, how it is shown.

Everything else reads this registry: the study file's [search] section and its checks (searcher.config), the Optuna
search space (searcher.search.space), the plan a trial trains with (`Hyperparams`, consumed by searcher.train.distill and
searcher.train.student), the card's hyperparameter lines (searcher.card), the leaderboard and the progress line.

Adding a hyperparameter is one `Hyperparam(...)` entry below plus its use in the training loop. Order matters only
for Optuna: parameters are suggested in this order, so new entries go at the end to keep earlier studies' draws.
This module must not import torch, transformers or optuna (the config and `searcher --help` stay instant).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from searcher import losses
from searcher.dimensions import (INF, LOG2, CardSlot, Choices, Dimension, Fixed, FloatRange, Hyperparam,  # noqa: F401
                                 IntRange, contains, describe, extent, rounded, user_params)

MAX_BATCH_SIZE = 1024
TEACHER_WEIGHT = "teacher_weight."  # + a teacher's name: its searched share of an ensemble ([teacher] search_weights)
MAX_AUGMENT = 32  # copies per sentence: the teacher labels them all once, so the cache grows with the largest


BASE: tuple[Hyperparam, ...] = (
    Hyperparam("learning_rate", float, FloatRange(1e-5, 1e-3, log=True), 0.0, 1.0, open_ends=("low", "high"),
               log=True, help="AdamW's peak learning rate (linear schedule)",
               card="learning_rate", card_slot="lead", card_exact=True, column="lr", fmt=".2e",
               aliases=("lr", "body_learning_rate")),
    Hyperparam("batch_size", int, Choices((16, 32, 64, 128)), 1, MAX_BATCH_SIZE, list_means="choices",
               help=f"the effective batch (micro-batches x accumulation), up to {MAX_BATCH_SIZE}",
               column="batch", fmt="d", imported_as="batch"),  # the card prints train/eval/accumulation lines
    Hyperparam("temperature", float, FloatRange(1.0, 20.0), 0.0, INF, open_ends=("low",),
               help="softens teacher and student distributions in the KL term",
               card="temperature", card_slot="distillation", card_rank=1, column="T", fmt=".2f",
               aliases=("distillation_temperature", "kd_temperature")),
    Hyperparam("alpha", float, FloatRange(0.0, 1.0), 0.0, 1.0,
               help="weight of the label (cross-entropy) loss; 1 - alpha weighs the distillation term",
               card="alpha", card_slot="distillation", column="alpha", fmt=".2f", aliases=("distillation_alpha",)),
    Hyperparam("epochs", int, Fixed(3), 1, 1000, help="passes over the training data",
               card="num_epochs", card_slot="end", column="epochs", fmt="d", aliases=("num_train_epochs",)),
    Hyperparam("weight_decay", float, Fixed(0.0), 0.0, INF, help="AdamW weight decay (not on biases/LayerNorm)",
               card="weight_decay", card_always=False),
    Hyperparam("warmup_ratio", float, Fixed(0.0), 0.0, 1.0, open_ends=("high",),
               help="fraction of the steps spent warming the learning rate up",
               card="lr_scheduler_warmup_ratio", card_always=False, aliases=("warmup_proportion",)),
    Hyperparam("max_grad_norm", float, Fixed(1.0), 0.0, INF, help="gradient clipping norm (0 turns clipping off)",
               card="max_grad_norm", card_always=False),
    Hyperparam("hidden_dropout", float, Fixed(0.1), 0.0, 1.0, open_ends=("high",),
               help="the student's dropout on hidden states (BERT's hidden_dropout_prob)",
               card="hidden_dropout_prob", card_always=False),
    Hyperparam("augment", int, Fixed(0), 0, MAX_AUGMENT,
               help="augmented copies of each labeled training sentence, labelled by the teacher ([data.augment])",
               card="augmented_copies_per_sentence", card_slot="distillation", card_rank=2, card_always=False),
)
# then the entries each distillation loss declares (its weight: searcher.losses), in the order the losses are
# registered: a new loss's entries come after all earlier ones, so earlier studies keep their draws
REGISTRY: tuple[Hyperparam, ...] = BASE + tuple(h for loss in losses.LOSSES.values() for h in loss.hyperparams)
BY_NAME = {h.name: h for h in REGISTRY}
NAMES = tuple(BY_NAME)


def in_use(loss_names=None) -> tuple[Hyperparam, ...]:
    """The entries a study with these losses has, in registry order: the base ones and the weights of its losses
    only (a logits-only study has no hidden_weight, neither in its trials nor on its cards). None: every entry."""
    if loss_names is None:
        return REGISTRY
    return BASE + tuple(h for name, loss in losses.LOSSES.items() if name in loss_names for h in loss.hyperparams)


@functools.lru_cache(maxsize=None)
def _hyperparams_class(names: tuple[str, ...]):
    """`Hyperparams`: one frozen field per entry named (fixed defaults become field defaults) plus the seed."""
    entries = [BY_NAME[n] for n in names]
    required = [(h.name, h.value_type) for h in entries if not isinstance(h.default, Fixed)]
    optional = [(h.name, h.value_type, dataclasses.field(default=h.default.value)) for h in entries
                if isinstance(h.default, Fixed)]
    cls = dataclasses.make_dataclass("Hyperparams", required + optional + [("seed", int, dataclasses.field(default=0))],
                                     frozen=True)
    cls.__module__ = __name__
    cls.__doc__ = "Everything one training run needs to know, searched or fixed (one field per registry entry in use)."
    return cls


def for_losses(loss_names=None) -> type:
    """The Hyperparams class of a study with these losses (the full `Hyperparams` for None)."""
    return _hyperparams_class(tuple(h.name for h in in_use(loss_names)))


Hyperparams = for_losses(None)  # every entry: for code that builds a plan by hand (tests, benchmarks, fine-tuning)


def from_values(values: dict, seed: int, loss_names=None) -> "Hyperparams":
    """A trial's Hyperparams from its values by name (searched and fixed), each cast to its declared type; with
    `loss_names`, only the entries of those losses (values of other losses' weights are left out).

    An entry with a fixed default may be missing (values recorded before a loss added its weight): it takes the default.
    """
    entries = in_use(loss_names)
    missing = [h.name for h in entries if h.name not in values and not isinstance(h.default, Fixed)]
    if missing:
        raise KeyError(f"no value for {', '.join(missing)}")
    cls = for_losses(loss_names)
    return cls(**{h.name: h.value_type(values[h.name]) for h in entries if h.name in values}, seed=int(seed))


def card_lines(values: dict, slot: CardSlot) -> list[tuple[str, str]]:
    """(card name, text) for the entries of one card slot, in registry order."""
    out = []
    for h in sorted(REGISTRY, key=lambda h: h.card_rank):
        if h.card is None or h.card_slot != slot or h.name not in values:
            continue
        value = values[h.name]
        if not h.card_always and h.default_value is not None and value == h.default_value:
            continue
        out.append((h.card, h.card_text(value)))
    return out


def columns(searched: tuple[str, ...] = ()) -> list[Hyperparam]:
    """The hyperparameters a leaderboard or progress line shows: those with a column, and any searched one."""
    return [h for h in REGISTRY if h.column or h.name in searched]


def cell(h: Hyperparam, value: Any) -> str:
    if value is None:
        return "-"
    return format(int(value) if h.fmt == "d" else float(value), h.fmt)
