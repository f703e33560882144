"""Every cache kind, damaged every way: the read says so in one log line and the entry is rebuilt, never a traceback.

One study builds every kind of cache once (a fine-tuned teacher, its logits and latency, the token arrays, logits of
transfer text and augmented copies, layer-wise hidden states); each case damages one file of one kind in a copy of
that cache and prepares the study again from it. The damage is fuzzed bytes (truncations, an empty file, random
bytes), and entries that read well but are not right: numbers zeroed with the seal deleted, the seal deleted, a
well-formed entry of the wrong shape sealed as if it were whole. Every kind is read through files.cached.
"""

import csv
import json
import logging
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from searcher import files

from searcher.train import runtime
from searcher.config import load_study
from searcher.search.prepare import prepare
from conftest import write_rows
from test_transfer import transfer_file

# (kind, glob under the cache folder): the file of that kind the case damages (the first in sorted order)
KINDS = {
    "tokens": "tokens/*.npz",
    "logits": "logits/*.npz",
    "extra logits (transfer)": "logits/transfer-*.npy",
    "extra logits (augment)": "logits/augmented-*.npy",
    "latency": "latency/*.json",
    "fine-tuned teacher": "teachers/*/model.safetensors",
    "intermediate": "intermediate/*.npy",
}


def _overwrite(at):
    def damage(b: bytes) -> bytes:
        start = at(len(b))
        return b[:start] + random.Random(start).randbytes(16) + b[start + 16:]
    return damage


DAMAGE = {
    "truncated to 0": lambda b: b[:0],
    "truncated to 1": lambda b: b[:1],
    "truncated to 100": lambda b: b[:100],
    "truncated to half": lambda b: b[:len(b) // 2],
    "truncated by 1": lambda b: b[:-1],
    "random bytes at 8": _overwrite(lambda n: 8),
    "random bytes in the middle": _overwrite(lambda n: n // 2),
}


def _seal_of(path: Path):
    """What vouches for an entry: an array's seal, a fine-tuned teacher's record (its files' checksums); None for a
    JSON entry, which is checked by reading it."""
    if path.suffix in (".npy", ".npz"):
        return Path(str(path) + files.SEAL)
    if path.suffix == ".safetensors":
        return path.parent / "searcher_teacher.json"
    return None


def _zeroed_unsealed(path: Path) -> None:
    """Every number zeroed (a .npy keeps its header: it still parses, to the right shape), and the seal deleted."""
    b = path.read_bytes()
    start = 0
    if path.suffix == ".npy":
        with open(path, "rb") as f:
            np.lib.format.read_array_header_1_0(f) if np.lib.format.read_magic(f) == (1, 0) else \
                np.lib.format.read_array_header_2_0(f)
            start = f.tell()
    path.write_bytes(b[:start] + bytes(len(b) - start))
    seal = _seal_of(path)
    if seal is not None and seal.suffix == files.SEAL:
        seal.unlink()


def _unsealed(path: Path) -> None:
    _seal_of(path).unlink()


def _wrong_shape(path: Path) -> None:
    """A well-formed entry one row short (or a latency record without its figures), sealed as if it were whole."""
    if path.suffix == ".json":
        path.write_text(json.dumps({"single_median": 1.0}))
        return
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file, save_file

        tensors = load_file(path)
        name = next(k for k, v in tensors.items() if v.ndim == 2)
        save_file({**tensors, name: tensors[name][:-1]}, path)
        return
    if path.suffix == ".npy":
        np.save(path, np.load(path)[:-1])
    else:
        with np.load(path) as z:
            arrays = {k: z[k][:-1] if z[k].ndim else z[k] for k in z.files}
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    files.seal(path, path)


# damage that leaves a readable entry; (name, applies to the entry, damage)
TAMPER = {
    "zeroed, seal deleted": (lambda p: p.suffix != ".json", _zeroed_unsealed),
    "seal deleted": (lambda p: _seal_of(p) is not None, _unsealed),
    "wrong shape, sealed": (lambda p: True, _wrong_shape),
}


def study_file(world, directory, cache, small):
    """A study that builds every cache kind, on a few rows (the teacher folder's cases fine-tune it again)."""
    return world.study(directory, name="caches", study={"cache_dir": str(cache)},
                       data={"train": str(small / "train.csv"), "validation": str(small / "validation.csv"),
                             "transfer": str(small / "transfer.csv"), "augment": {"p_mask": 0.3, "p_swap": 0.2}},
                       # on these few rows one epoch leaves the teacher at the majority class: it only has to
                       # build its caches here
                       teacher={"model": None, "base": str(world.base),
                                "fine_tune": {"epochs": 1, "batch_size": 16, "learning_rate": 2e-3,
                                              "allow_baseline": True}},
                       student={"layers": [1], "hidden": None, "init": "teacher"},
                       search={"augment": 1, "hidden_weight": 1.0},
                       distill={"losses": ["logits", "hidden_mse"]})


@pytest.fixture(scope="module")
def built(world, tmp_path_factory):
    """(a cache folder holding every kind, the folder of the study's small data)."""
    root = tmp_path_factory.mktemp("caches")
    small = root / "data"
    small.mkdir()
    for name, n in (("train", 48), ("validation", 16)):
        with open(world.data / f"{name}.csv") as f:
            rows = list(csv.reader(f))
        write_rows(small / f"{name}.csv", rows[0], rows[1:n + 1])
    transfer_file(world, small, n=16)
    cache = root / "cache"
    prepare(load_study(study_file(world, root, cache, small)), runtime.resolve("cpu", "off"))
    return cache, small


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("kind", KINDS)
def test_a_damaged_cache_is_rebuilt_with_one_log_line(world, built, tmp_path, caplog, kind, damage):
    cache, small = tmp_path / "cache", built[1]
    shutil.copytree(built[0], cache)
    target = sorted(cache.glob(KINDS[kind]))[0]
    whole = target.read_bytes()
    damaged = DAMAGE[damage](whole)
    assert damaged != whole
    target.write_bytes(damaged)
    config = load_study(study_file(world, tmp_path, cache, small))
    with caplog.at_level(logging.INFO):
        prepare(config, runtime.resolve("cpu", "off"))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
                and not r.getMessage().startswith("teacher: no better than")]  # this teacher's, allowed above
    said = target.parent if kind == "fine-tuned teacher" else target
    assert len(warnings) == 1 and "is damaged" in warnings[0] and str(said) in warnings[0], warnings
    assert "rebuilding it" in warnings[0] and "\n" not in warnings[0] and len(warnings[0]) < 500
    rebuilt = target.read_bytes()
    assert rebuilt != damaged
    if kind != "latency":  # timings differ from run to run; everything else is computed the same way again
        assert rebuilt == whole
    else:
        assert json.loads(rebuilt)["single_median"] > 0


@pytest.mark.parametrize("kind, tamper", [(kind, tamper) for kind in KINDS for tamper, (applies, _) in TAMPER.items()
                                           if applies(Path(KINDS[kind]))])  # a latency record has no seal
def test_an_entry_that_reads_but_is_not_right_is_rebuilt_with_one_log_line(world, built, tmp_path, caplog, kind,
                                                                           tamper):
    cache, small = tmp_path / "cache", built[1]
    shutil.copytree(built[0], cache)
    target = sorted(cache.glob(KINDS[kind]))[0]
    damage = TAMPER[tamper][1]
    whole = target.read_bytes()
    damage(target)
    config = load_study(study_file(world, tmp_path, cache, small))
    with caplog.at_level(logging.INFO):
        prepare(config, runtime.resolve("cpu", "off"))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
                and not r.getMessage().startswith("teacher: no better than")]
    said = target.parent if kind == "fine-tuned teacher" else target
    assert len(warnings) == 1 and "is damaged" in warnings[0] and str(said) in warnings[0], warnings
    seal = _seal_of(target)
    assert seal is None or seal.is_file()  # sealed again
    if kind != "latency":
        assert target.read_bytes() == whole
    else:
        assert json.loads(target.read_text())["throughput_per_s"] > 0
