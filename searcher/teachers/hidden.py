"""The teacher's intermediate outputs for the layer-wise losses: computed once and cached beside its logits, or,
when the cache would exceed its disk budget, computed by the teacher running beside the student.

What is stored is hidden states only: each needed teacher layer's states as float16, one row per token at the row's
real length (no padding), memory-mapped and aligned with the token cache's offsets. Attention is not stored: a
layer's queries, keys and values are its input hidden states through the layer's query/key/value projections, so
they are recomputed from the cached states of the layer below (searcher.losses read them as `Outputs.attention`),
and the cache grows with the tokens, never with their square. The student's side is read the same way from its
`output_hidden_states`, which works under sdpa attention (whose `output_attentions` is empty).

A cache file follows the logit cache's rules: keyed by the teacher's content, the rows' content, the tokenizer, the
max length, the device kind and AMP; built under a file lock, written atomically, checked when read and rebuilt with
one log line when damaged. This module knows nothing of Optuna or of the loss formulas.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from searcher import files
from searcher.losses import Outputs, Side
from searcher.train.batching import padded_positions
from searcher.train.models import forward_inputs
from searcher.train.outputs import hidden_layers, outputs
from searcher.train.runtime import Runtime
from searcher.data.tokens import Encoded

log = logging.getLogger(__name__)

CHUNK_ROWS = 256  # teacher rows per forward pass while caching


@dataclass(frozen=True)
class TokenizedRows:
    """Rows the teacher's outputs are cached for: a name ("train", "transfer", "augmented"), their tokens (the
    teacher's tokenization, the same as the student's for token-level losses) and what they are made of."""

    name: str
    encoded: Encoded
    content: str


def cache_key(teacher_identity: str, rows: TokenizedRows, tokenizer_key: str, max_length: int, runtime: Runtime,
              layer: int) -> str:
    device = "cuda" if runtime.is_cuda else runtime.device.split(":")[0]
    return files.cache_key([teacher_identity, rows.content, rows.name, tokenizer_key, max_length, device,
                            runtime.amp, layer])


def size_bytes(row_sets: Sequence[TokenizedRows], layers: Sequence[int], width: int) -> int:
    """What caching these layers for these rows takes on disk (float16)."""
    tokens = sum(int(r.encoded.offsets[-1]) for r in row_sets)
    return tokens * width * 2 * len(layers)


WHAT = "teacher intermediate cache"


def _read(path: Path, tokens: int, width: int) -> Optional[np.ndarray]:
    """The cached states (None: not cached); raises unless they are whole (seal, shape, dtype)."""
    if not path.is_file():
        return None
    files.check_seal(path)
    array = np.load(path, mmap_mode="r")
    if array.shape != (tokens, width) or array.dtype != np.float16:
        raise ValueError(f"shape {array.shape} {array.dtype}, expected ({tokens}, {width}) float16")
    return array


def cached_states(cache_dir: Path, teacher, teacher_identity: str, tokenizer_key: str, max_length: int,
                  rows: TokenizedRows, layers: Sequence[int], width: int, runtime: Runtime,
                  batch_size: int = CHUNK_ROWS) -> dict[int, np.ndarray]:
    """{layer: (tokens, width) float16 memmap} of the teacher's hidden states over `rows`, computed once.

    `teacher` is a callable giving the teacher model, called only when something must be computed."""
    tokens = int(rows.encoded.offsets[-1])
    paths = {layer: Path(cache_dir) / "intermediate" /
             f"{rows.name}-L{layer}-{cache_key(teacher_identity, rows, tokenizer_key, max_length, runtime, layer)}.npy"
             for layer in layers}

    def each() -> dict[int, Optional[np.ndarray]]:
        return {layer: files.read_entry(WHAT, path, lambda path=path: _read(path, tokens, width), log)
                for layer, path in paths.items()}

    def read() -> Optional[dict[int, np.ndarray]]:
        found = each()
        return found if all(a is not None for a in found.values()) else None

    def build() -> dict[int, np.ndarray]:  # the layers still missing, in one teacher pass
        found = each()
        missing = [layer for layer, a in found.items() if a is None]
        log.info("teacher intermediate outputs: computing hidden states of layers %s for %d %s rows once (%.0f MB); "
                 "cached in %s", missing, len(rows.encoded), rows.name, size_bytes([rows], missing, width) / 1e6,
                 paths[missing[0]].parent)
        _compute(teacher(), rows.encoded, {layer: paths[layer] for layer in missing}, width, runtime, batch_size)
        return {**found, **{layer: np.load(paths[layer], mmap_mode="r") for layer in missing}}

    if not layers:
        return {}
    # one lock for all of a row set's layers (the first one's): workers starting together compute once
    return files.cached(WHAT, paths[layers[0]], read, build, log)


def _compute(model, enc: Encoded, paths: dict[int, Path], width: int, runtime: Runtime, batch_size: int) -> None:
    """One teacher pass over the rows, each needed layer's states written at the rows' token offsets."""
    import contextlib

    import torch

    from searcher.train.batching import collate

    model.to(runtime.device).eval()
    tokens = int(enc.offsets[-1])
    order = np.argsort(enc.lengths, kind="stable")  # similar lengths together: little padding
    with contextlib.ExitStack() as stack:
        tmps = {layer: stack.enter_context(files.atomic_file(path)) for layer, path in paths.items()}
        outs = {layer: np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(tokens, width))
                for layer, tmp in tmps.items()}
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                inputs = {k: v.to(runtime.device) for k, v in collate(enc, idx).items()}
                with runtime.autocast():
                    states = model(**inputs, output_hidden_states=True).hidden_states
                for layer, out in outs.items():
                    h = states[layer].float().cpu().numpy()
                    for row, i in enumerate(idx):
                        a, b = int(enc.offsets[i]), int(enc.offsets[i + 1])
                        out[a:b] = h[row, : b - a]
        for out in outs.values():
            out.flush()
        del outs
        for layer, tmp in tmps.items():
            files.seal(tmp, paths[layer])


# the needed layers' cached states are copied to the training device once when they take at most this many bytes
# (float16, as stored), and each batch is then a gather there; larger ones are read row by row on the host. On a
# CPU the "device" copy is a second one in memory, so its budget is smaller.
DEVICE_STATES_BYTES = {"cuda": 4 * 2 ** 30, "cpu": 512 * 2 ** 20}


class StackedStates:
    """The cached states of several row sets as one, by training-set row (as searcher.data.rows.StackedLogits does for
    logits): the train split, then teacher-labelled text, each with its token offsets."""

    def __init__(self, parts: list[tuple[dict[int, np.ndarray], np.ndarray, int]]):
        # (states by layer, token offsets, rows used) per part
        self.parts = [p for p in parts if p[2]]
        self.ends = np.cumsum([p[2] for p in self.parts])
        self._device: Optional[dict] = None  # by layer: every used token's states, then one zero row (padding)
        self._where: tuple = ()  # (device, layers, budget) the copy was made for, or refused for

    def nbytes(self, layers: Sequence[int]) -> int:
        return sum(int(offsets[used] - offsets[0]) * states[layer].shape[1] * states[layer].itemsize
                   for states, offsets, used in self.parts for layer in layers)

    def to_device(self, layers: Sequence[int], device, budget: Optional[int] = None) -> bool:
        """Copy the states of `layers` to `device` once, unless they take more than `budget` bytes (default: by
        device kind, DEVICE_STATES_BYTES); True when batches can be gathered there (`padded_on_device`)."""
        import torch

        where = (str(device), tuple(sorted(layers)), budget)
        if self._where == where:
            return self._device is not None
        self._where, self._device = where, None
        kind = "cuda" if str(device).startswith("cuda") else "cpu"
        if not self.parts or self.nbytes(layers) > (DEVICE_STATES_BYTES[kind] if budget is None else budget):
            return False
        starts, lengths, base = [], [], 0
        for _, offsets, used in self.parts:
            used_offsets = np.asarray(offsets[: used + 1], dtype=np.int64)
            starts.append(used_offsets[:-1] - used_offsets[0] + base)
            lengths.append(np.diff(used_offsets))
            base += int(used_offsets[-1] - used_offsets[0])
        self._starts = torch.from_numpy(np.concatenate(starts)).to(device)
        self._lengths = torch.from_numpy(np.concatenate(lengths)).to(device)
        self._sentinel = base
        self._device = {}
        for layer in layers:
            chunks = [np.ascontiguousarray(states[layer][int(offsets[0]): int(offsets[used])])
                      for states, offsets, used in self.parts]
            width = chunks[0].shape[1]
            chunks.append(np.zeros((1, width), dtype=chunks[0].dtype))
            self._device[layer] = torch.from_numpy(np.concatenate(chunks)).to(device)
        return True

    def padded_on_device(self, rows, layer: int, width: int):
        """As `padded`, from the device copy: `rows` a device tensor of training-set rows."""
        _, positions = padded_positions(self._starts, self._lengths, rows, width, self._sentinel)
        return self._device[layer][positions].float()

    def padded(self, rows: np.ndarray, layer: int, width: int) -> np.ndarray:
        """(len(rows), width, hidden) float32, each row's states at its tokens and zeros after."""
        which = np.searchsorted(self.ends, rows, side="right")
        first = self.parts[0][0][layer]
        out = np.zeros((len(rows), width, first.shape[1]), dtype=np.float32)
        for j, (r, part) in enumerate(zip(rows, which)):
            states, offsets, _ = self.parts[part]
            local = int(r - (self.ends[part - 1] if part else 0))
            a, b = int(offsets[local]), int(offsets[local + 1])
            out[j, : b - a] = states[layer][a:b]
        return out


class CachedTeacherStates:
    """The teacher's intermediate outputs from the cache: hidden states as stored, Q/K/V through the teacher's own
    attention projections (kept on the device, a few small matrices)."""

    def __init__(self, rows: StackedStates, needs: Side, projections_by_layer: dict, heads: int):
        self.rows, self.needs, self.projections, self.heads = rows, needs, projections_by_layer, heads

    def outputs(self, part: np.ndarray, inputs: dict, to_device) -> Outputs:
        import torch

        width = int(inputs["input_ids"].shape[1])
        layers = hidden_layers(self.needs)
        if self.rows.to_device(layers, inputs["input_ids"].device):  # once; then a gather on the device per batch
            rows = to_device(torch.from_numpy(np.ascontiguousarray(part, dtype=np.int64)))
            hidden = {layer: self.rows.padded_on_device(rows, layer, width) for layer in layers}
        else:
            hidden = {layer: to_device(torch.from_numpy(self.rows.padded(part, layer, width))) for layer in layers}
        out = Outputs(logits=None, mask=inputs["attention_mask"], heads=self.heads)
        out.hidden = {layer: hidden[layer] for layer in self.needs.hidden}
        with torch.no_grad():
            for layer in self.needs.attention:
                q, k, v = self.projections[layer]
                x = hidden[layer - 1]
                out.attention[layer] = (q(x).float(), k(x).float(), v(x).float())
        return out


class OnlineTeacherStates:
    """The teacher running beside the student on each batch (what TextBrewer does every step): for studies whose
    cache would exceed its budget."""

    def __init__(self, model, needs: Side, runtime: Runtime):
        self.model, self.needs, self.runtime = model.to(runtime.device).eval(), needs, runtime

    def outputs(self, part: np.ndarray, inputs: dict, to_device) -> Outputs:
        import torch

        with torch.inference_mode(), self.runtime.autocast():
            states = self.model(**forward_inputs(self.model, inputs), output_hidden_states=True).hidden_states
            out = outputs(self.model, states, None, inputs["attention_mask"], self.needs)
        # inference tensors cannot enter autograd as constants of the student's graph otherwise
        out.hidden = {k: v.clone() for k, v in out.hidden.items()}
        out.attention = {k: tuple(t.clone() for t in v) for k, v in out.attention.items()}
        return out


# the names before issue 28 ("teacher" is searcher.teachers' seam; these serve its intermediate outputs to the loop)
CachedTeacher, OnlineTeacher, RowSet, Rows = CachedTeacherStates, OnlineTeacherStates, TokenizedRows, StackedStates
