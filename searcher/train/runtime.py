"""Where and how tensors run: device choice, AMP mode, autocast and micro-batch defaults.

AMP "auto" means bf16 on CUDA devices that support it, else fp16 with a gradient scaler; fp32 on CPU, because bf16
autocast is 20-45% slower than fp32 on the AVX-512 CPUs we measured (../shared/STACK.md).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal, Optional, Union

AmpMode = Literal["bf16", "fp16", "off"]

# [train] cohort = "auto": the first cohort size tried; an out-of-memory halves it (searcher.search.objective). On a
# CPU, one: a cohort of 8 small students pays there (0.72x their trials one at a time for L1/H64, 0.99x for L4/H256:
# benchmarks/results/gpu.md, README) but running out of host memory is no error to halve on (the kernel's OOM killer
# or swap), so a CPU user sets K by hand.
AUTO_COHORT = {"cuda": 64, "cpu": 1}

# Largest micro-batch tried first on CPU: beyond this, a CPU gains no throughput and only uses memory.
CPU_MICRO_BATCH = 256


@dataclass(frozen=True)
class Runtime:
    device: str  # "cpu", "cuda", "cuda:1", ...
    amp: AmpMode
    micro_batch_size: Optional[int]  # None: as large as the effective batch allows (CUDA) / CPU_MICRO_BATCH (CPU)
    eval_batch_size: Optional[int]
    group_by_length: bool = True
    compile: Union[bool, str] = False  # torch.compile the step's forward and loss (a backend's name, or the default)

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    def micro_for(self, batch_size: int) -> int:
        if self.micro_batch_size is not None:
            return min(self.micro_batch_size, batch_size)
        return batch_size if self.is_cuda else min(batch_size, CPU_MICRO_BATCH)

    def eval_for(self, batch_size: int) -> int:
        """Evaluation batch: the training batch (as the textbook recipe sets it), capped like a micro-batch."""
        if self.eval_batch_size is not None:
            return self.eval_batch_size
        return self.micro_for(batch_size)

    def autocast(self):
        import torch

        if self.amp == "off":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        return torch.autocast(device_type="cuda" if self.is_cuda else "cpu", dtype=dtype)

    def grad_scaler(self):
        """The GradScaler of this runtime: it scales only for fp16 (bf16 and fp32 need none), so the training loop
        has one code path (scale, unscale, step, update) whatever the precision."""
        import torch

        return torch.amp.GradScaler("cuda" if self.is_cuda else "cpu", enabled=self.amp == "fp16")


def resolve(device: str = "auto", amp: str = "auto", micro_batch_size: Optional[int] = None,
            eval_batch_size: Optional[int] = None, group_by_length: bool = True,
            compile: Union[bool, str] = False) -> Runtime:
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        from searcher.errors import ConfigError

        raise ConfigError(f"[train] device = {device!r} but no CUDA device is visible; use device = \"auto\" or \"cpu\"")
    if amp == "auto":
        if device.startswith("cuda"):
            amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            amp = "off"
    if isinstance(compile, str):
        from torch._dynamo import list_backends

        if compile not in list_backends(exclude_tags=()):
            from searcher.errors import ConfigError

            raise ConfigError(f"[train] compile = {compile!r} is not a torch.compile backend here (known: "
                              f"{', '.join(list_backends())}); use true for the default")
    return Runtime(device, amp, micro_batch_size, eval_batch_size, group_by_length, compile)


def cohort_size(cohort, device: str) -> int:
    """How many trials to train together: [train] cohort, with "auto" resolved for this device."""
    if cohort == "auto":
        return AUTO_COHORT["cuda" if device.startswith("cuda") else "cpu"]
    return int(cohort)


def finish_in_background(setting, device: str) -> bool:
    """Whether kept students are finished (saved, exported, timed) beside the next trial's training:
    [train] finish_in_background, with "auto" resolved for this device (yes on a GPU, no on a CPU)."""
    if setting == "auto":
        return device.startswith("cuda")
    return bool(setting)


def from_config(train_section, num_threads_default: Optional[int] = None) -> Runtime:
    import torch

    threads = train_section.num_threads or num_threads_default
    if threads:
        torch.set_num_threads(threads)
    return resolve(train_section.device, train_section.amp, train_section.micro_batch_size,
                   train_section.eval_batch_size, train_section.group_by_length, train_section.compile)


def is_oom(error: BaseException) -> bool:
    """True for CUDA (or any torch) out-of-memory errors, which are retried with a smaller micro-batch."""
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(error, oom) or (isinstance(error, RuntimeError) and "out of memory" in str(error).lower())


def empty_cache(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
