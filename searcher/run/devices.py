"""Which workers `searcher optimize --devices ... --workers-per-device N` starts: one per GPU named (N per GPU), or N
on the study's own device, each with its device (CUDA_VISIBLE_DEVICES) and its share of the CPU cores.

Every flag is checked here, before anything is started or written: a GPU that does not exist, `--devices` on a machine
without one, fewer than one worker, or `--devices` beside a `[train] device` that names one device is one line
(ConfigError). This module plans; it starts nothing (searcher.run.supervise does) and knows nothing of training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from searcher.config import StudyConfig
from searcher.errors import ConfigError


@dataclass(frozen=True)
class Worker:
    label: str  # what its lines are prefixed with: "gpu0", "gpu0.2" (the second on GPU 0), "cpu.1"
    env: dict[str, str] = field(default_factory=dict)  # added to the supervisor's environment (CUDA_VISIBLE_DEVICES)
    num_threads: Optional[int] = None  # torch threads; None: the study's [train] num_threads decides


def visible_gpus() -> list[str]:
    """The CUDA devices this process sees, each as a child's CUDA_VISIBLE_DEVICES must name it: the supervisor's own
    CUDA_VISIBLE_DEVICES (ids or UUIDs) restricts and renumbers them, so `--devices 0` is the first it lists."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return [str(i) for i in range(count)]
    return [name.strip() for name in listed.split(",")][:count]  # CUDA stops at the first name it cannot use


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use (taskset, a container's cpuset)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def plan(config: StudyConfig, devices: Optional[str], per_device: Optional[int],
         gpus: Optional[list[str]] = None, n_cores: Optional[int] = None) -> list[Worker]:
    """The workers to start. `devices`: "all" or GPU numbers like "0,2,3" (None: the study's own device, shared by
    `per_device` workers); `gpus` and `n_cores` default to this machine's. Each worker gets an equal share of the
    cores as its torch threads, unless the study sets [train] num_threads: workers that each take every core slow
    each other down (and a CPU worker's latency figures with them)."""
    n = 1 if per_device is None else per_device
    if n < 1:
        raise ConfigError(f"--workers-per-device must be 1 or more, got {n}")
    gpus = visible_gpus() if gpus is None else gpus
    if devices is None:
        device = _own_device(config, gpus)
        slots = [(f"{device}.{k}", {}) for k in range(1, n + 1)]
    else:
        _check_train_device(config)
        chosen = _chosen(devices, gpus)
        slots = [(f"gpu{i}" if n == 1 else f"gpu{i}.{k}", {"CUDA_VISIBLE_DEVICES": gpus[i]})
                 for i in chosen for k in range(1, n + 1)]
    threads = None if config.train.num_threads else max(1, (n_cores or cores()) // len(slots))
    return [Worker(label, env, threads) for label, env in slots]


def _own_device(config: StudyConfig, gpus: list[str]) -> str:
    """Where workers without --devices train: the study's [train] device ("auto": a GPU if one is visible)."""
    device = config.train.device
    if device == "auto":
        return "cuda" if gpus else "cpu"
    return device


def _check_train_device(config: StudyConfig) -> None:
    device = config.train.device
    if device.startswith("cuda:"):
        raise ConfigError(f"{config.path}: [train] device = {device!r} names one GPU, but --devices gives each worker "
                          f"its own: set [train] device = \"auto\" (or \"cuda\"), or drop --devices")
    if device not in ("auto", "cuda"):
        raise ConfigError(f"{config.path}: [train] device = {device!r} does not train on a CUDA GPU, but --devices "
                          f"starts a worker per GPU: set [train] device = \"auto\", or drop --devices "
                          f"(--workers-per-device N alone runs N workers on the study's device)")


def _chosen(devices: str, gpus: list[str]) -> list[int]:
    """The GPU numbers `--devices` names, checked against the GPUs this machine has."""
    if not gpus:
        raise ConfigError(f"--devices {devices}: no CUDA GPU is visible on this machine; drop --devices "
                          f"(--workers-per-device N alone runs N workers on the CPU)")
    have = f"this machine has {len(gpus)} GPU(s): " + ("0" if len(gpus) == 1 else f"0-{len(gpus) - 1}")
    if devices.strip() == "all":
        return list(range(len(gpus)))
    parts = [part.strip() for part in devices.split(",")]
    if not all(part.isdigit() for part in parts):
        raise ConfigError(f"--devices {devices!r}: give \"all\" or GPU numbers like 0,2,3 ({have})")
    chosen = [int(part) for part in parts]
    missing = [i for i in chosen if i >= len(gpus)]
    if missing:
        raise ConfigError(f"--devices {devices}: there is no GPU {missing[0]} ({have})")
    twice = sorted({i for i in chosen if chosen.count(i) > 1})
    if twice:
        raise ConfigError(f"--devices {devices}: GPU {twice[0]} is named twice; name each once "
                          f"(--workers-per-device N starts N workers on each)")
    return chosen
