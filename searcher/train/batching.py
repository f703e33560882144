"""Batches from tokenized splits: which rows go together, and padded tensors for them.

Dynamic padding (each batch padded to its own longest row) and length grouping keep the padding small: SST-2
sentences are ~13 tokens, so fixed padding to 64 would waste most of the compute. Knows nothing of models or Optuna.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from searcher.data.tokens import Encoded


def collate(enc: Encoded, indices: np.ndarray, pin_memory: bool = False) -> dict:
    """Pad the chosen examples to their own longest length (dynamic padding) and return torch tensors.

    `pin_memory` (CUDA only) lets the copy to the GPU run asynchronously with `non_blocking=True`.
    """
    import torch

    lengths = enc.lengths[indices]
    width = int(lengths.max())
    ids = np.full((len(indices), width), enc.pad_token_id, dtype=np.int64)
    mask = np.zeros((len(indices), width), dtype=np.int64)
    tti = np.zeros((len(indices), width), dtype=np.int64) if enc.token_type_ids is not None else None
    for row, (i, n) in enumerate(zip(indices, lengths)):
        start = enc.offsets[i]
        ids[row, :n] = enc.input_ids[start:start + n]
        mask[row, :n] = 1
        if tti is not None:
            tti[row, :n] = enc.token_type_ids[start:start + n]
    batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    if tti is not None:
        batch["token_type_ids"] = torch.from_numpy(tti)
    if pin_memory:
        batch = {k: v.pin_memory() for k, v in batch.items()}
    return batch


def epoch_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                  group_by_length: bool) -> list[np.ndarray]:
    """The effective batches of one epoch.

    With `group_by_length`, indices are shuffled, cut into mega-batches of 50 batches, sorted by length inside each
    (as transformers' LengthGroupedSampler does), then the batch order is shuffled: batches hold similar lengths, so
    dynamic padding wastes little, and the epoch still visits the data in random order.
    """
    order = rng.permutation(len(lengths))
    if group_by_length:
        mega = 50 * batch_size
        chunks = [order[i:i + mega] for i in range(0, len(order), mega)]
        order = np.concatenate([c[np.argsort(-lengths[c], kind="stable")] for c in chunks])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if group_by_length and len(batches) > 1:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def micro_batches(batch: np.ndarray, lengths: np.ndarray, micro_batch_size: int) -> Iterator[np.ndarray]:
    """Split an effective batch into micro-batches of similar lengths. The gradient of the whole batch does not
    depend on how it is split, so sorting here only saves padding."""
    if len(batch) <= micro_batch_size:
        yield batch
        return
    ordered = batch[np.argsort(lengths[batch], kind="stable")]
    for i in range(0, len(ordered), micro_batch_size):
        yield ordered[i:i + micro_batch_size]
