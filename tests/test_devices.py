"""searcher.run.devices: which workers `--devices` / `--workers-per-device` start, and every bad flag refused in one
line before anything is started or written. The GPUs a machine has are given to plan() (no GPU is needed here); the
processes themselves are tested in test_supervise.py."""

import pytest

from searcher.config import load_study
from searcher.errors import ConfigError
from searcher.run import devices


def config(world, tmp_path, **train):
    return load_study(world.study(tmp_path, train=train or None))


def test_one_worker_per_gpu_each_on_its_own_device_with_a_share_of_the_cores(world, tmp_path):
    workers = devices.plan(config(world, tmp_path), "all", None, gpus=["0", "1", "2", "3"], n_cores=16)
    assert [(w.label, w.env, w.num_threads) for w in workers] == [
        ("gpu0", {"CUDA_VISIBLE_DEVICES": "0"}, 4), ("gpu1", {"CUDA_VISIBLE_DEVICES": "1"}, 4),
        ("gpu2", {"CUDA_VISIBLE_DEVICES": "2"}, 4), ("gpu3", {"CUDA_VISIBLE_DEVICES": "3"}, 4)]


def test_chosen_gpus_keep_the_supervisors_own_names_for_them(world, tmp_path):
    """Under CUDA_VISIBLE_DEVICES=4,5,6 the supervisor's GPU 0 is the machine's 4: the worker must be given "4"."""
    workers = devices.plan(config(world, tmp_path), "0,2", 2, gpus=["4", "5", "6"], n_cores=16)
    assert [(w.label, w.env["CUDA_VISIBLE_DEVICES"], w.num_threads) for w in workers] == [
        ("gpu0.1", "4", 4), ("gpu0.2", "4", 4), ("gpu2.1", "6", 4), ("gpu2.2", "6", 4)]


def test_without_devices_n_workers_share_the_studys_device(world, tmp_path):
    c = config(world, tmp_path)
    assert [(w.label, w.env, w.num_threads) for w in devices.plan(c, None, 3, gpus=[], n_cores=8)] == [
        ("cpu.1", {}, 2), ("cpu.2", {}, 2), ("cpu.3", {}, 2)]
    assert [w.num_threads for w in devices.plan(c, None, 4, gpus=[], n_cores=2)] == [1] * 4  # never 0
    assert [w.label for w in devices.plan(c, None, 2, gpus=["0"], n_cores=8)] == ["cuda.1", "cuda.2"]
    assert [w.label for w in devices.plan(config(world, tmp_path / "c", device="cpu"), None, 2, gpus=["0"],
                                          n_cores=8)] == ["cpu.1", "cpu.2"]


def test_a_study_that_sets_num_threads_keeps_them(world, tmp_path):
    workers = devices.plan(config(world, tmp_path, num_threads=3), None, 2, gpus=[], n_cores=16)
    assert [w.num_threads for w in workers] == [None, None]  # the worker reads [train] num_threads itself


def test_visible_gpus_follow_the_supervisors_cuda_visible_devices(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert devices.visible_gpus() == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-5e1f, 3,7")  # CUDA uses the first names it can
    assert devices.visible_gpus() == ["GPU-5e1f", "3"]


@pytest.mark.parametrize("flags, gpus, train, message", [
    (["--devices", "all"], [], {}, "--devices all: no CUDA GPU is visible on this machine; drop --devices"),
    (["--devices", "0,2"], ["0", "1"], {}, "--devices 0,2: there is no GPU 2 (this machine has 2 GPU(s): 0-1)"),
    (["--devices", "0,0"], ["0", "1"], {}, "GPU 0 is named twice"),
    (["--devices", "first"], ["0"], {}, "give \"all\" or GPU numbers like 0,2,3"),
    (["--workers-per-device", "0"], [], {}, "--workers-per-device must be 1 or more, got 0"),
    (["--devices", "all", "--workers-per-device", "-1"], ["0"], {}, "--workers-per-device must be 1 or more, got -1"),
    (["--devices", "all"], ["0", "1"], {"device": "cuda:1"}, "[train] device = 'cuda:1' names one GPU, but --devices"),
    (["--devices", "0"], ["0"], {"device": "cpu"}, "[train] device = 'cpu' does not train on a CUDA GPU"),
    (["--devices", "all", "--n-trials", "2"], ["0"], {}, "--n-trials counts one process's trials"),
])
def test_bad_flags_are_one_line_and_nothing_is_written(world, tmp_path, cli, monkeypatch, flags, gpus, train,
                                                       message):
    monkeypatch.setattr(devices, "visible_gpus", lambda: gpus)
    path = world.study(tmp_path, train=train or None)
    code, out, err = cli("optimize", path, *flags)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.toml"]  # no study, no folders, no lock files
