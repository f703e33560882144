"""CPU latency of a classifier: single query and a batch of 32, median and p90 after warm-up.

Measured on the CPU whatever the training device, because that is where small students are usually served and
where the card's speed-up over the teacher means something. `timings` is shared with searcher.records.export, which times
ONNX Runtime sessions the same way, so cards read PyTorch and ONNX numbers alike.
"""

from __future__ import annotations

import copy
import time
from typing import Callable

import numpy as np

from searcher import timing
from searcher.train.batching import collate
from searcher.data.tokens import Encoded

BATCH = 32


def _times(fn, repeats: int, warmup: int) -> np.ndarray:
    for _ in range(warmup):
        fn()
    out = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        fn()
        out[i] = (time.perf_counter() - start) * 1000.0
    return out


def inputs(enc: Encoded) -> tuple[dict, dict]:
    """A typical single query (the example of median length) and a batch (the first 32 examples as they come)."""
    single = collate(enc, np.array([int(np.argsort(enc.lengths, kind="stable")[len(enc) // 2])]))
    return single, collate(enc, np.arange(min(BATCH, len(enc))))


def timings(single: Callable, batch: Callable, n: int, threads: int, repeats: int = 30,
            batch_repeats: int = 10) -> dict:
    """{single_median, single_p90, batched_median, batched_p90 (ms), batch, throughput_per_s, threads}."""
    with timing.phase("latency rounds"):
        one = _times(single, repeats, warmup=5)
        many = _times(batch, batch_repeats, warmup=2)
    return {
        "single_median": round(float(np.median(one)), 3),
        "single_p90": round(float(np.percentile(one, 90)), 3),
        "batched_median": round(float(np.median(many)), 3),
        "batched_p90": round(float(np.percentile(many, 90)), 3),
        "batch": int(n),
        "throughput_per_s": round(n / float(np.median(many)) * 1000.0, 1),
        "threads": int(threads),
    }


def measure(model, enc: Encoded, repeats: int = 30, batch_repeats: int = 10) -> dict:
    """The PyTorch model's CPU timings (see `timings`)."""
    import torch

    cpu_model = model if next(model.parameters()).device.type == "cpu" else copy.deepcopy(model).to("cpu")
    cpu_model.eval()
    single, batch = inputs(enc)
    with torch.inference_mode():
        return timings(lambda: cpu_model(**single), lambda: cpu_model(**batch), int(batch["input_ids"].shape[0]),
                       torch.get_num_threads(), repeats, batch_repeats)
