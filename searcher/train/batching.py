"""Batches from tokenized splits: which rows go together, and padded tensors for them.

Dynamic padding (each batch padded to its own longest row, rounded up to a bucketed width) and length grouping keep
the padding small: SST-2 sentences are ~13 tokens, so fixed padding to 64 would waste most of the compute. Training
batches are gathered on the device from a split moved there once (`TokenRows`), as airbench keeps its data on the
GPU. Knows nothing of models or Optuna.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from searcher.data.tokens import Encoded


def width_for(longest: int) -> int:
    """The padded width of a batch whose longest row has `longest` tokens: rounded up to a bucket (a multiple of 8 up
    to 64, of 32 up to 256, then of 64), so a study's batches take a handful of shapes (what torch.compile and CUDA
    graphs need to reuse their work) for at most a few padding tokens more per row."""
    step = 8 if longest <= 64 else 32 if longest <= 256 else 64
    return max(step, -(-int(longest) // step) * step)


def _gather(offsets: np.ndarray, lengths: np.ndarray, width: int, sentinel: int):
    """Token positions of each row padded to `width` (the sentinel position where a row has ended), and its mask."""
    columns = np.arange(width)
    mask = columns[None, :] < lengths[:, None]
    return np.where(mask, offsets[:, None] + columns[None, :], sentinel), mask


def collate(enc: Encoded, indices: np.ndarray, pin_memory: bool = False) -> dict:
    """Pad the chosen examples to their own longest length (dynamic padding) and return torch tensors: one vectorised
    gather on the host (export, latency and inference read exact widths; training batches come from `TokenRows`).

    `pin_memory` (CUDA only) lets the copy to the GPU run asynchronously with `non_blocking=True`.
    """
    import torch

    indices = np.asarray(indices, dtype=np.int64)
    lengths = enc.lengths[indices]
    positions, mask = _gather(enc.offsets[indices], lengths, int(lengths.max()), len(enc.input_ids))
    ids = np.append(enc.input_ids, enc.pad_token_id)[positions].astype(np.int64)
    batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask.astype(np.int64))}
    if enc.token_type_ids is not None:
        batch["token_type_ids"] = torch.from_numpy(np.append(enc.token_type_ids, 0)[positions].astype(np.int64))
    if pin_memory:
        batch = {k: v.pin_memory() for k, v in batch.items()}
    return batch


class TokenRows:
    """A tokenized split moved once to the training device: a batch is one gather and pad there (a few kernels, no
    Python loop over rows, no copy from the host but the batch's row numbers), padded to a bucketed width."""

    def __init__(self, enc: Encoded, device: str):
        import torch

        self.enc, self.device = enc, device
        self.lengths = enc.lengths  # on the host: a batch's width is known without reading the device
        self.sentinel = len(enc.input_ids)  # the position every padding token is read from
        self._offsets = torch.from_numpy(enc.offsets[:-1].astype(np.int64)).to(device)
        self._lengths = torch.from_numpy(self.lengths.astype(np.int64)).to(device)
        self._ids = torch.from_numpy(np.append(enc.input_ids, enc.pad_token_id).astype(np.int64)).to(device)
        self._types = (torch.from_numpy(np.append(enc.token_type_ids, 0).astype(np.int64)).to(device)
                       if enc.token_type_ids is not None else None)

    def width(self, rows: np.ndarray) -> int:
        return min(width_for(int(self.lengths[rows].max())), width_for(int(self.lengths.max())))

    def batch(self, rows, width: int) -> dict:
        """The model inputs of `rows` (a device tensor of row numbers) padded to `width` tokens."""
        mask, positions = padded_positions(self._offsets, self._lengths, rows, width, self.sentinel)
        out = {"input_ids": self._ids[positions], "attention_mask": mask.long()}
        if self._types is not None:
            out["token_type_ids"] = self._types[positions]
        return out


def padded_positions(starts, lengths, rows, width: int, sentinel: int) -> tuple:
    """(mask, positions) of `rows` (a device tensor) padded to `width`: row r's tokens are at starts[r] onwards in a
    flat table, each padding place reads `sentinel` (the table's padding entry). A batch is then table[positions]."""
    import torch

    columns = torch.arange(width, device=rows.device)
    mask = columns[None, :] < lengths[rows][:, None]
    return mask, torch.where(mask, starts[rows][:, None] + columns[None, :], sentinel)


def epoch_parts(batches: list[np.ndarray], lengths: np.ndarray, micro: int) -> tuple[np.ndarray, list[list[tuple]]]:
    """One epoch's row order as one array (copied to the device once per epoch) and, per effective batch, its
    micro-batches as (start, stop) slices of that array."""
    order, parts, at = [], [], 0
    for batch in batches:
        slices = []
        for part in micro_batches(batch, lengths, micro):
            order.append(part)
            slices.append((at, at + len(part)))
            at += len(part)
        parts.append(slices)
    return (np.concatenate(order) if order else np.zeros(0, np.int64)), parts


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
