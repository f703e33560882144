"""What `searcher import` maps published names to: derived from the hyperparameter registry (searcher.hyperparams),
so a parameter added there is importable, and shown, under the same names everywhere.

Published names are normalised (lower case, spaces and hyphens as "_"). The batch size, the seed and warmup steps
need more than a rename and are handled where cards are read (searcher.recipes.cards).
This module must not import torch, transformers or optuna.
"""

from __future__ import annotations

from searcher import hyperparams

STUDENT_KEYS = ("layers", "hidden", "init", "checkpoint")
STATIC_KEYS = ("family", "static_dim", "static_train_embeddings", "static_head")  # [student] family "static"
# What an [[enqueue]] block may set, in the order blocks list them.
PARAMETERS = hyperparams.NAMES + STUDENT_KEYS + STATIC_KEYS
INTEGERS = ({h.name for h in hyperparams.REGISTRY if h.value_type is int}
            | {"layers", "hidden", "static_dim"})
# published name -> searcher name: each entry's own name, its card name and its other published names
ALIASES = {alias: h.name for h in hyperparams.REGISTRY if h.imported_as == "value"
           for alias in dict.fromkeys((h.name, *((h.card,) if h.card else ()), *h.aliases))}
# searcher's own cards print these with at most 4 decimals (hyperparams.rounded); the front matter has them exact
# what searcher's cards list under Distillation rather than in the Trainer's hyperparameter list
DISTILLATION_SETTINGS = tuple(h.name for h in hyperparams.REGISTRY if h.card and h.card_slot == "distillation")
ROUNDED_IN_SEARCHER_CARDS = {h.name for h in hyperparams.REGISTRY if h.value_type is float and h.card and not h.card_exact}

PER_DEVICE_BATCH = ("train_batch_size", "per_device_train_batch_size", "batch_size")
TOTAL_BATCH = "total_train_batch_size"
BATCH_FACTORS = ("gradient_accumulation_steps", "num_devices")
WARMUP_STEPS = ("lr_scheduler_warmup_steps", "warmup_steps")
SEED = "seed"
