"""Shared fixtures: a tiny world built in tmp dirs (vocabulary, tokenizer, teacher, data, study files). No network.

The tiny task is learnable (sentences of "good" words vs "bad" words), so accuracies move and pruning has something
to compare, yet every trial takes well under a second on 2 CPU cores.
"""

from __future__ import annotations

import csv
import os
import random
import socket
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# No test may reach the real Hugging Face Hub. huggingface_hub reads HF_ENDPOINT and HF_HOME once, at import, so they
# are set here, before anything imports it: every Hub call goes to the local test Hub on this port (started by the
# `hub` fixture; without it, connections are refused at once), and no login cache of this machine is seen.
HUB_PORT = _free_port()
os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{HUB_PORT}"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="searcher-tests-hf-")
for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.pop(var, None)
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
# hf_xet is installed (huggingface_hub needs it), and with it the client uploads every "lfs" file through Xet storage,
# which the test Hub does not speak: with Xet off it takes the classic git-LFS batch path, which the test Hub serves.
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_ETAG_TIMEOUT"] = "2"
os.environ["SEARCHER_HUB_BACKOFF"] = "0.05"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


# --- what a test needs from outside the checkout ---
# Tests that need a service or input the machine may lack (a PostgreSQL or Redis server, the real data in
# ../shared/data and the data packages, Chromium) call requirement() where it is missing: a skip with the reason on a
# developer's machine, a failure where SEARCHER_TEST_REQUIRE names it (.ci/run sets them all), so that CI cannot pass
# by skipping what it claims to test.

REQUIRE_ENV = "SEARCHER_TEST_REQUIRE"
# js: node + @huggingface/transformers; trackers: the tracker clients and an MLflow server (tests/test_trackers.py)
REQUIREMENTS = ("postgres", "redis", "data", "browser", "js", "trackers")


def required() -> set[str]:
    """The names in SEARCHER_TEST_REQUIRE (comma-separated); an unknown name is an error, not silently nothing."""
    names = {n.strip() for n in os.environ.get(REQUIRE_ENV, "").split(",") if n.strip()}
    unknown = names - set(REQUIREMENTS)
    if unknown:
        raise pytest.UsageError(f"{REQUIRE_ENV} names {', '.join(sorted(unknown))}; known: {', '.join(REQUIREMENTS)}")
    return names


def requirement(name: str, reason: str):
    """`name` is missing: skip with `reason`, or fail with it where SEARCHER_TEST_REQUIRE names `name`."""
    if name not in REQUIREMENTS:
        raise ValueError(f"unknown requirement {name!r}; known: {', '.join(REQUIREMENTS)}")
    if name in required():
        pytest.fail(f"{reason} [{REQUIRE_ENV} requires {name}]", pytrace=False)
    pytest.skip(reason)


def pytest_configure(config):
    required()  # a typo in SEARCHER_TEST_REQUIRE stops the run at once


def pytest_report_header(config):
    return f"{REQUIRE_ENV}: {','.join(sorted(required())) or '(none: missing services and data skip)'}"

GOOD = "good great fine lovely superb brilliant warm funny smart moving".split()
BAD = "bad awful dull boring weak poor silly flat tired clumsy".split()
NEUTRAL = "the a film movie plot story acting cast is was very quite rather and but".split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB = SPECIAL + GOOD + BAD + NEUTRAL


def sentence(rng: random.Random, label: int) -> str:
    words = rng.sample(NEUTRAL, rng.randint(2, 6))
    pool = GOOD if label else BAD
    other = BAD if label else GOOD
    words += rng.sample(pool, rng.randint(1, 3))
    if rng.random() < 0.2:
        words += rng.sample(other, 1)  # some noise so accuracy is not trivially 1.0
    rng.shuffle(words)
    return " ".join(words)


def write_rows(path: Path, header: list[str], rows: list[list], delimiter: str = ",") -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE)
        w.writerow(header)
        w.writerows(rows)
    return path


def make_tokenizer():
    from transformers import BertTokenizerFast

    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(VOCAB)}, do_lower_case=True)
    assert len(tok) == len(VOCAB)  # the old vocab_file= keyword silently gives an empty vocabulary
    return tok


def make_bert(num_labels: int = 2, layers: int = 2, hidden: int = 64, seed: int = 0, labels=None):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    names = labels or [str(i) for i in range(num_labels)]
    cfg = BertConfig(vocab_size=len(VOCAB), hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=max(1, hidden // 32), intermediate_size=2 * hidden,
                     max_position_embeddings=64, num_labels=num_labels,
                     id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    return BertForSequenceClassification(cfg)


def to_toml(doc: dict) -> str:
    import tomli_w

    return tomli_w.dumps(doc)


class World:
    """Paths of the tiny world, and a factory for study files that use it."""

    def __init__(self, root: Path):
        self.root = root
        self.data = root / "data"
        self.teacher = root / "teacher"  # a fine-tuned 2-label classifier (labels "neg"/"pos")
        self.base = root / "base"  # the same architecture, never fine-tuned (for [teacher] base)
        self.cache = root / "cache"

    def study(self, directory: Path, name: str = "tiny", **sections) -> Path:
        doc = {
            "study": {"name": name, "n_trials": 3, "seed": 7, "pruner": "none", "heartbeat_interval": 1,
                      "grace_period": 3, "cache_dir": str(self.cache)},
            "data": {"train": str(self.data / "train.csv"), "validation": str(self.data / "validation.csv"),
                     "text_columns": ["text"], "label_column": "label", "max_length": 32},
            "teacher": {"model": str(self.teacher)},
            "student": {"layers": [1, 2], "hidden": [64], "init": "random"},
            "search": {"learning_rate": [2e-3, 6e-3], "batch_size": [8, 16], "temperature": [1.0, 4.0],
                       "alpha": [0.0, 1.0], "epochs": 3},
            "train": {"latency": True},
            "export": {"formats": []},  # ONNX export has its own tests (test_export); elsewhere it only costs time
        }
        for section, values in sections.items():
            if values is None:
                doc.pop(section, None)
            elif section == "enqueue":
                doc["enqueue"] = values
            else:
                doc.setdefault(section, {}).update(values)
                doc[section] = {k: v for k, v in doc[section].items() if v is not None}
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{name}.toml"
        path.write_text(to_toml(doc))
        return path


def build_world(root: Path) -> World:
    import torch

    from searcher.train import distill, runtime
    from searcher.hyperparams import Hyperparams
    from searcher.data.tokens import Encoded

    world = World(root)
    world.data.mkdir(parents=True)
    rng = random.Random(0)
    for name, n in (("train", 192), ("validation", 64), ("test", 64)):
        rows = []
        for _ in range(n):
            label = rng.randint(0, 1)
            rows.append([sentence(rng, label), "pos" if label else "neg"])
        write_rows(world.data / f"{name}.csv", ["text", "label"], rows)
    # sentence pairs (RTE-like): does the hypothesis share the premise's polarity? string labels, TSV
    pairs = []
    for _ in range(160):
        a, b = rng.randint(0, 1), rng.randint(0, 1)
        pairs.append([len(pairs), sentence(rng, a), sentence(rng, b), "entailment" if a == b else "not_entailment"])
    write_rows(world.data / "pairs_train.tsv", ["index", "sentence1", "sentence2", "label"], pairs[:128], "\t")
    write_rows(world.data / "pairs_dev.tsv", ["index", "sentence1", "sentence2", "label"], pairs[128:], "\t")

    tok = make_tokenizer()
    base = make_bert(labels=["neg", "pos"], seed=1)
    base.save_pretrained(world.base)
    tok.save_pretrained(world.base)

    # the teacher: the base trained for a few epochs with plain cross-entropy (alpha = 1)
    teacher = make_bert(labels=["neg", "pos"], seed=1)
    train_rows = list(csv.reader(open(world.data / "train.csv")))[1:]
    enc = tok([r[0] for r in train_rows], truncation=True, max_length=32)
    ids = enc["input_ids"]
    import numpy as np

    offsets = np.concatenate([[0], np.cumsum([len(x) for x in ids])])
    flat = np.concatenate([np.asarray(x, dtype=np.int32) for x in ids])
    tti = np.zeros_like(flat, dtype=np.int8)
    labels = np.array([1 if r[1] == "pos" else 0 for r in train_rows])
    data = Encoded(flat, tti, offsets, labels, 0)
    hp = Hyperparams(learning_rate=2e-3, batch_size=8, temperature=1.0, alpha=1.0, epochs=8, seed=0)
    distill.train(teacher, data, None, data, None, hp, runtime.resolve("cpu", "off"))
    teacher.save_pretrained(world.teacher)
    tok.save_pretrained(world.teacher)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    return world


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    return build_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "sst2" / "train.tsv").is_file():
        requirement("data", f"real data not found at {SHARED_DATA} (CI has ../shared/data; a fresh clone does not)")
    return SHARED_DATA


def run_cli(*args: str) -> int:
    from searcher.cli import main

    return main(list(args))


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""

    def call(*args):
        code = run_cli(*map(str, args))
        out, err = capsys.readouterr()
        return code, out, err

    return call


PYTHON = sys.executable


TOKEN = "hf_test_0123456789abcdefSECRET"


@pytest.fixture(scope="session")
def finished_study(world, tmp_path_factory) -> Path:
    """One finished tiny study shared by the card, hub and dashboard tests (read it; copy it to change it):
    4 trials of 3 epochs with a test split, the 2 best students kept, a repo id template."""
    from searcher.cli import main

    directory = tmp_path_factory.mktemp("finished")
    path = world.study(directory, study={"n_trials": 4, "keep_best": 2,
                                         "pruner": {"type": "median", "n_startup_trials": 2}},
                       data={"test": str(world.data / "test.csv")},
                       hub={"repo_id": "acme/{study}-L{layers}-H{hidden}-t{trial}"})
    assert main(["-q", "optimize", str(path)]) == 0
    return path


def copy_study(path: Path, into: Path) -> Path:
    """A copy of a finished tiny study (its database and output folder) to change without touching the original.
    Saved students stay where the records say (the original's folder), which card and push only read."""
    import shutil

    into.mkdir(parents=True, exist_ok=True)
    for entry in path.parent.iterdir():
        target = into / entry.name
        if entry.is_dir():
            shutil.copytree(entry, target)
        else:
            shutil.copy2(entry, target)
    return into / path.name


@pytest.fixture(scope="session")
def hub_server():
    from hubserver import Hub

    hub = Hub(token=TOKEN)
    hub.start(HUB_PORT)
    yield hub
    hub.stop()


@pytest.fixture
def hub(hub_server, monkeypatch):
    """The local test Hub, emptied, with HF_TOKEN set for this test."""
    hub_server.reset()
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return hub_server


# --- PostgreSQL: a real server on 127.0.0.1 (CI has one); each test gets a database of its own ---

PG = os.environ.get("SEARCHER_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432")


def pg_admin():
    import psycopg2

    dsn = PG.replace("postgresql+psycopg2://", "postgresql://")
    con = psycopg2.connect(dsn + "/postgres", connect_timeout=3)
    con.autocommit = True
    return con


@pytest.fixture
def pg_url():
    try:
        admin = pg_admin()
    except Exception as e:  # noqa: BLE001 - any failure to connect means: no server here
        requirement("postgres", f"no PostgreSQL server at {PG} ({str(e).strip().splitlines()[0]}); CI has one")
    name = f"searcher_test_{uuid.uuid4().hex[:10]}"
    admin.cursor().execute(f"CREATE DATABASE {name}")
    yield f"{PG}/{name}"
    cur = admin.cursor()
    cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,))
    cur.execute(f"DROP DATABASE IF EXISTS {name}")
    admin.close()


# --- Redis: a real server on 127.0.0.1:6379 (CI has one) ---

REDIS_URL = os.environ.get("SEARCHER_TEST_REDIS", "redis://127.0.0.1:6379")


@pytest.fixture
def redis_url() -> str:
    try:
        import redis
    except ImportError:
        requirement("redis", "the redis client is not installed (pip install -e '.[test]' installs it)")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as e:  # noqa: BLE001 - any failure to connect means: no server here
        requirement("redis", f"no Redis server at {REDIS_URL} ({e}); CI has one")
    return REDIS_URL


# --- Chromium (Debian's package), for the dashboard's browser check ---


@pytest.fixture(scope="session")
def chromium() -> str:
    import shutil

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        requirement("browser", "Debian's chromium is not installed (.ci/run installs it)")
    return path


# aten ops that read a tensor's values back to the host: on a GPU each is a device-to-host sync
HOST_READS = frozenset({"_local_scalar_dense", "item", "is_nonzero", "equal", "nonzero", "masked_select", "_unique2",
                        "unique_dim", "unique_consecutive", "repeat_interleave"})


@pytest.fixture
def host_reads(monkeypatch):
    """`watch(owner, name)` wraps a method so that every aten op it runs is seen (a TorchDispatchMode, so ops of
    transformers, autograd and the optimizer count too); returns {method: [calls, Counter of host reads]}. On a CPU
    this shows what would stall a GPU step."""
    import collections

    from torch.utils._python_dispatch import TorchDispatchMode

    seen = {}

    class Reads(TorchDispatchMode):
        def __init__(self, counter):
            super().__init__()
            self.counter = counter

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func._schema.name.split("::")[-1]
            if name in HOST_READS:
                self.counter[name] += 1
            return func(*args, **(kwargs or {}))

    def watch(owner, name):
        real, key = getattr(owner, name), f"{owner.__name__}.{name}"
        seen[key] = [0, collections.Counter()]

        def watched(*args, **kwargs):
            seen[key][0] += 1
            with Reads(seen[key][1]):
                return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, watched)

    watch.seen = seen
    return watch
