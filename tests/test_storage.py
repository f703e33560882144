"""searcher.records.storage: which file a storage URL names, finished studies opened as STORAGE_URL::STUDY_NAME, and
new SQLite storages opened by many processes at once."""

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from searcher.records import storage
from searcher.search import warmstart
from searcher.config import parse_study
from searcher.errors import StudyError


@pytest.mark.parametrize("url, file", [
    ("sqlite:////abs/dir/s.db", "/abs/dir/s.db"),
    ("sqlite:////abs/dir/s.db?timeout=5", "/abs/dir/s.db"),
    ("sqlite:///rel/s.db?timeout=5&check_same_thread=false", "rel/s.db"),
    ("sqlite:////abs/a%20b.db", "/abs/a b.db"),  # SQLAlchemy decodes it, and opens that file
    ("sqlite:///file:/abs/s.db?mode=ro&uri=true", "/abs/s.db"),
    ("sqlite:///:memory:", None),
    ("sqlite://", None),
    ("journal:/abs/study.log", "/abs/study.log"),
    ("/abs/study.log", "/abs/study.log"),
    ("postgresql+psycopg2://user:pw@host/db", None),
    ("redis://127.0.0.1:6379", None),
])
def test_the_file_a_storage_url_names(url, file):
    assert storage.storage_file(url) == file


def source_study(url: str) -> None:
    """A finished plain Optuna study (params named like TrainingArguments) with one complete trial."""
    study = optuna.create_study(storage=url, study_name="done", direction="maximize")
    study.add_trial(optuna.trial.create_trial(
        value=0.8, params={"learning_rate": 2e-3, "per_device_train_batch_size": 16},
        distributions={"learning_rate": FloatDistribution(1e-5, 1e-1, log=True),
                       "per_device_train_batch_size": CategoricalDistribution([8, 16])}))


def test_a_study_in_a_sqlite_url_with_a_query_is_found_by_import_and_warm_start(tmp_path, cli):
    url = f"sqlite:///{tmp_path / 'src' / 's.db'}?timeout=5"
    assert url.startswith("sqlite:////")
    (tmp_path / "src").mkdir()
    source_study(url)
    assert (tmp_path / "src" / "s.db").is_file() and not list(tmp_path.glob("src/*timeout*"))

    code, out, err = cli("import", f"{url}::done")
    assert code == 0, err
    assert "[[enqueue]]" in out and "learning_rate = 0.002" in out and "batch_size = 16" in out

    raw = {"study": {"name": "target", "warm_start": [f"{url}::done"]},
           "data": {"train": "t.csv", "validation": "v.csv"}, "teacher": {"model": "m"},
           "student": {"layers": [2], "hidden": [128], "init": "random"},
           "search": {"learning_rate": [1e-3, 1e-2], "batch_size": [8, 16]}}
    config = parse_study(raw, tmp_path / "target.toml")
    warmstart.check(config, f"sqlite:///{tmp_path / 'target.db'}")  # the study does not exist yet
    ((name, study),) = warmstart.pending(config, None, f"sqlite:///{tmp_path / 'target.db'}")
    assert name == f"{url}::done" and [t.values for t in study.trials] == [[0.8]]


def test_a_study_source_that_cannot_be_opened_is_one_line(tmp_path):
    with pytest.raises(StudyError, match=r"the storage file .*missing\.db does not exist"):
        storage.open_study(f"sqlite:///{tmp_path / 'missing.db'}?timeout=5::x")
    assert not (tmp_path / "missing.db").exists()  # not created empty
    with pytest.raises(StudyError, match="give a finished study as STORAGE_URL::STUDY_NAME"):
        storage.open_study(f"sqlite:///{tmp_path / 'missing.db'}")
    url = f"sqlite:///{tmp_path / 's.db'}"
    source_study(url)
    with pytest.raises(StudyError, match=r"no study named 'other' there \(studies: done\)"):
        storage.open_study(f"{url}::other")


@pytest.mark.parametrize("a, b, same", [
    ("postgresql+psycopg2://u:secret@DB-Host:5432/searcher", "postgresql://other@db-host/searcher?sslmode=require",
     True),
    ("postgresql://u@db-host/searcher", "postgresql://u@db-host/other", False),
    ("postgresql://u@db-host:5433/searcher", "postgresql://u@db-host/searcher", False),
    ("redis://127.0.0.1:6379", "redis://127.0.0.1", True),
    ("redis://127.0.0.1/1", "redis://127.0.0.1/2", False),
    ("sqlite:////abs/./w.db", "sqlite:////abs/w.db?timeout=5", True),
    ("journal:/abs/x/../s.log", "/abs/s.log", True),
    ("sqlite:////abs/w.db", "sqlite:////abs/v.db", False),
])
def test_same_storage_compares_where_the_studies_are_not_how_the_url_is_spelled(a, b, same):
    assert storage.same_storage(a, b) is same


# Several processes opening one new SQLite file at the same instant (the `--devices` supervisor starts its workers
# so). Each process imports once, then, round after round, waits at a barrier of files and opens that round's new file
# with the others.
OPEN_TOGETHER = r'''
import os, sys, time
from pathlib import Path
import optuna
from searcher.records.storage import open_storage
folder, n, rounds = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
failed = 0
for r in range(rounds):
    (folder / f"ready-{r}-{os.getpid()}").touch()
    while len(list(folder.glob(f"ready-{r}-*"))) < n:
        time.sleep(0.002)
    try:
        storage = open_storage(f"sqlite:///{folder / f'new-{r}.db'}")
        optuna.create_study(study_name="s", storage=storage, load_if_exists=True)
    except Exception as e:
        failed += 1
        print(f"round {r}: {e}".splitlines()[0][:200])
sys.exit(1 if failed else 0)
'''


def test_workers_opening_a_new_sqlite_file_at_the_same_instant_all_get_the_schema(tmp_path):
    """Before the schema lock, 1 to 3 of 4 processes failed ("table studies already exists", "table trial_values
    already exists", ...) in most rounds (7 of these 12, run once against the old code)."""
    import sqlite3
    import subprocess
    import sys

    rounds = 12
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_TOGETHER, str(tmp_path), "4", str(rounds)], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(4)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    for r in range(rounds):  # the schema is whole and written once, and the study exists once
        con = sqlite3.connect(tmp_path / f"new-{r}.db")
        assert con.execute("SELECT COUNT(*) FROM version_info").fetchone() == (1,)
        assert con.execute("SELECT COUNT(*) FROM alembic_version").fetchone() == (1,)
        assert con.execute("SELECT COUNT(*) FROM studies").fetchone() == (1,)
        con.close()
