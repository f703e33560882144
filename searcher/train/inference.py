"""Forward passes over a whole tokenized split: the teacher's logits (once, cached) and a student's evaluation.

Batches are sorted by length so padding is small; results come back in the split's order as float32.
Knows nothing of training, Optuna or caches.
"""

from __future__ import annotations

import numpy as np

from searcher.train.batching import collate
from searcher.train.runtime import Runtime
from searcher.data.tokens import Encoded


def logits_of(model, enc: Encoded, runtime: Runtime, batch_size: int) -> np.ndarray:
    """Logits for every example, in the split's order, as float32."""
    import torch

    model.eval()
    order = np.argsort(enc.lengths, kind="stable")
    out = np.empty((len(enc), model.config.num_labels), dtype=np.float32)
    with torch.inference_mode():
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            inputs = {k: v.to(runtime.device, non_blocking=True)
                      for k, v in collate(enc, idx, pin_memory=runtime.is_cuda).items()}
            with runtime.autocast():
                logits = model(**inputs).logits
            out[idx] = logits.float().cpu().numpy()
    return out
