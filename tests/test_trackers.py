"""Experiment trackers ([report] to), against the real components: an MLflow tracking server on 127.0.0.1 with a
SQLite backend (read back with MlflowClient), TensorBoard event files (tensorboard's event reader), Trackio's local
SQLite store, and W&B's offline run files. One test over every tracker checks the shared promises, as optuna's
sampler tests do; then MLflow's own (parent and nested runs, a server killed mid-study).

The MLflow server runs from a venv of its own (full mlflow pins an older pyarrow than datasets takes; the tests'
client is mlflow-skinny): .ci/run makes it at .ci/mlflow, or point SEARCHER_TEST_MLFLOW at an `mlflow` executable.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import ROOT, _free_port, requirement
from searcher import trackers
from searcher.testing.trackers import Run, TrackerDeclarations, TrackerPromises

# Trackio reads TRACKIO_DIR once, when it is imported: every Trackio run of these tests goes to this folder
os.environ["TRACKIO_DIR"] = tempfile.mkdtemp(prefix="searcher-tests-trackio-")

def need(module: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        requirement("trackers", f"{module} is not installed (pip install -e '.[test]' installs every tracker)")


# --- MLflow: a real tracking server ---


class MLflowServer:
    def __init__(self, root: Path):
        exe = os.environ.get("SEARCHER_TEST_MLFLOW") or str(ROOT / ".ci" / "mlflow" / "bin" / "mlflow")
        if not Path(exe).is_file():
            requirement("trackers", f"no MLflow server at {exe} (.ci/run makes one: python3 -m venv .ci/mlflow && "
                                    f".ci/mlflow/bin/pip install mlflow; or set SEARCHER_TEST_MLFLOW)")
        self.exe, self.root = exe, root
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self) -> "MLflowServer":
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "server.log", "ab")
        self.proc = subprocess.Popen(
            [self.exe, "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
             "--artifacts-destination", str(self.root / "artifacts")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the MLflow server exited: {(self.root / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2):
                    return self
            except OSError:
                time.sleep(0.5)
        pytest.fail("the MLflow server did not answer within 120 s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the server and its uvicorn worker, at once
            self.proc.wait()

    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.url)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    need("mlflow")
    server = MLflowServer(tmp_path_factory.mktemp("mlflow")).start()
    yield server
    server.kill()


def mlflow_runs(server: MLflowServer, experiment: str) -> dict[int, Run]:
    client = server.client()
    exp = client.get_experiment_by_name(experiment)
    out = {}
    for r in client.search_runs([exp.experiment_id], filter_string="tags.`searcher.level` = 'trial'"):
        number = int(r.data.tags["searcher.trial"])
        assert number not in out, f"two runs for trial {number}"
        curves = {key: sorted((m.step, m.value) for m in client.get_metric_history(r.info.run_id, key))
                  for key in r.data.metrics}
        state = r.data.tags.get("searcher.state", "") if r.info.status != "RUNNING" else ""
        out[number] = Run(r.data.params, curves, state, json.dumps(r.data.tags),
                          {a.path for a in client.list_artifacts(r.info.run_id)})
    return out


# --- TensorBoard: event files, read with tensorboard's own reader ---


def tensorboard_runs(log_dir: Path) -> dict[int, Run]:
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.plugins.hparams import plugin_data_pb2

    out = {}
    for folder in sorted(log_dir.glob("trial-*")):
        acc = ea.EventAccumulator(str(folder), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
        acc.Reload()
        curves = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
        texts = {tag: b"".join(e.tensor_proto.string_val).decode() for tag in acc.Tags()["tensors"]
                 for e in acc.Tensors(tag)}
        params = {}
        if (folder / "hparams").is_dir():
            hp = ea.EventAccumulator(str(folder / "hparams"))
            hp.Reload()
            start = plugin_data_pb2.HParamsPluginData.FromString(
                hp.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info
            params = {k: v.string_value if v.HasField("string_value") else v.number_value
                      for k, v in start.hparams.items()}
        state = next((s.split("**")[1] for tag, s in texts.items() if tag.startswith("state")), "")
        out[int(folder.name.split("-")[1])] = Run(params, curves, state, json.dumps(texts),
                                                  {p.name for p in folder.iterdir() if p.is_file()}
                                                  | ({"README.md"} if any(t.startswith("card") for t in texts)
                                                     else set()))
    return out


# --- Trackio: its local SQLite store ---


def trackio_runs(project: str) -> dict[int, Run]:
    from trackio.sqlite_storage import SQLiteStorage

    out = {}
    for name in SQLiteStorage.get_runs(project):
        logs = SQLiteStorage.get_logs(project, name)
        curves: dict = {}
        state, text = "", ""
        for row in logs:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key not in ("step", "timestamp") and not key.startswith("_"):
                    curves.setdefault(key, []).append((row["step"], value))
                elif isinstance(value, dict) and value.get("_type") == "trackio.markdown":
                    state, text = value["_value"].split("**")[1], text + value["_value"]
        config = SQLiteStorage.get_run_config(project, name) or {}
        out[int(name.rsplit("-", 1)[1])] = Run(config, {k: sorted(v) for k, v in curves.items()}, state,
                                               text + json.dumps(config, default=str))
    return out


# --- W&B: offline run folders (the transaction log of each run, as `wandb sync` reads it) ---


def wandb_records(path: Path):
    """The records of a .wandb file: W&B's LevelDB-style log (a 7-byte header, 32 KiB blocks of records with a
    7-byte header each: checksum, length, kind = full/first/middle/last)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4) and buf:
            record = wandb_internal_pb2.Record()
            record.ParseFromString(buf)
            yield record
            buf = b""


def wandb_runs(wandb_dir: Path) -> dict[int, Run]:
    out: dict[int, Run] = {}
    for log in sorted(wandb_dir.glob("offline-run-*/run-*.wandb")):
        number = int(log.stem.rsplit("-", 1)[1])
        run = out.setdefault(number, Run({}, {}, ""))  # a resumed run's folders add up to one run when synced
        run.files |= {p.name for p in (log.parent / "files").iterdir()}
        for rec in wandb_records(log):
            kind = rec.WhichOneof("record_type")
            items = {"history": lambda: rec.history.item, "summary": lambda: rec.summary.update,
                     "run": lambda: rec.run.config.update}.get(kind, lambda: [])()
            values = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}
            if kind == "run":
                run.params.update({k: v for k, v in values.items() if k != "_wandb"})
                run.text += json.dumps(values) + rec.run.notes + " ".join(rec.run.tags)
            elif kind == "history":
                for key, value in values.items():
                    if not key.startswith("_") and isinstance(value, (int, float)):
                        run.curves.setdefault(key, []).append((values["_step"], value))
            elif kind == "summary" and "state" in values:
                run.state = values["state"]
                run.summary.update({k: v for k, v in values.items() if isinstance(v, (int, float))})
                run.text += json.dumps(values)
    return out


# --- the shared promises (searcher.testing.trackers), over every registered tracker ---

TRACKERS = list(trackers.TRACKERS)


class Backend:
    """Where one tracker of a test reports, and how its runs are read back."""

    def __init__(self, name: str, request, monkeypatch, tmp_path: Path):
        need(trackers.TRACKERS[name].module)
        self.name, self.tmp = name, tmp_path
        self.keeps_files = name != "trackio"  # Trackio keeps files as content-addressed artifacts, not by name
        self.key = f"t{uuid.uuid4().hex[:8]}"  # an experiment / project of the test's own
        self.table: dict = {}
        if name == "mlflow":
            self.server = request.getfixturevalue("mlflow_server")
            self.table = {"tracking_uri": self.server.url, "experiment": self.key}
        elif name == "tensorboard":
            self.table = {"log_dir": str(tmp_path / "tb")}
        elif name == "trackio":
            self.table = {"project": self.key}
        elif name == "wandb":
            monkeypatch.setenv("WANDB_MODE", "offline")
            monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
            for var in ("WANDB_API_KEY", "WANDB_PROJECT", "WANDB_ENTITY"):
                monkeypatch.delenv(var, raising=False)

    @property
    def report(self) -> dict:
        return {"to": [self.name], **({self.name: self.table} if self.table else {})}

    def runs(self, study_name: str) -> dict[int, Run]:
        if self.name == "mlflow":
            return mlflow_runs(self.server, self.key)
        if self.name == "tensorboard":
            return tensorboard_runs(self.tmp / "tb" / study_name)
        if self.name == "trackio":
            return trackio_runs(self.key)
        if self.name == "wandb":
            return wandb_runs(self.tmp / "wb" / "wandb")
        raise AssertionError(f"no reader for tracker {self.name!r}: add one to tests/test_trackers.py")


class TestEveryTracker(TrackerPromises):
    @pytest.fixture(params=TRACKERS)
    def backend(self, request, monkeypatch, tmp_path):
        return Backend(request.param, request, monkeypatch, tmp_path)

    @pytest.fixture
    def study_file(self, world):
        return world.study


class TestEveryTrackerDeclares(TrackerDeclarations):
    @pytest.fixture(params=TRACKERS)
    def tracker_class(self, request):
        return trackers.TRACKERS[request.param]


def test_each_member_of_a_cohort_is_its_own_tracker_run(world, tmp_path, cli):
    """Trials trained together in one cohort report as trials alone do: one run each, with its own parameters,
    per-epoch curve and final state (TensorBoard's event files, read with tensorboard's reader)."""
    from optuna.trial import TrialState

    from searcher.config import load_study
    from searcher.records.storage import load

    need(trackers.TRACKERS["tensorboard"].module)
    path = world.study(tmp_path / "s", name="team", study={"n_trials": 3},
                       student={"layers": [1], "hidden": [64], "init": "random"},
                       search={"learning_rate": [2e-3, 6e-3], "batch_size": 16, "epochs": 2},
                       train={"cohort": 3, "latency": False}, report={"to": ["tensorboard"], "tensorboard": {
                           "log_dir": str(tmp_path / "tb")}},
                       enqueue=[{"learning_rate": lr} for lr in (2e-3, 4e-3, 6e-3)])
    code, out, err = cli("optimize", path, "--no-progress")
    assert code == 0, err
    trials = {t.number: t for t in load(load_study(path)).trials}
    assert all(t.user_attrs["cohort"] == {"size": 3, "trials": [0, 1, 2]} for t in trials.values())
    runs = tensorboard_runs(tmp_path / "tb" / "team")
    assert sorted(runs) == [0, 1, 2]
    for number, trial in trials.items():
        assert trial.state == TrialState.COMPLETE and runs[number].state == "COMPLETE"
        assert float(runs[number].params["learning_rate"]) == pytest.approx(trial.params["learning_rate"])
        assert [v for _, v in runs[number].curves["accuracy"]][:2] == pytest.approx(
            trial.user_attrs["history"]["accuracy"])


def test_a_study_naming_a_missing_tracker_stops_before_training_with_the_pip_command(world, tmp_path, cli,
                                                                                      monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    path = world.study(tmp_path / "s", report={"to": ["tensorboard", "wandb"]})
    code, out, err = cli("optimize", path)
    assert code == 2
    assert "pip install 'searcher[wandb]'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s" / "tiny.db").exists()  # stopped before the study existed


@pytest.mark.parametrize("table, message", [
    ({"to": ["mlflow"], "mlflow": {"tracking_uri": "http://me:pw123456@mlflow.example"}}, "MLFLOW_TRACKING"),
    # issue 28: a token in the query was accepted, printed and stored
    ({"to": ["mlflow"], "mlflow": {"tracking_uri": "http://mlflow.example/?access_token=pw123456"}}, "MLFLOW_TRACKING"),
    ({"to": ["mlflow"], "mlflow": {"tracking_uri": "http://mlflow.example/#api%5Fkey=pw123456"}}, "MLFLOW_TRACKING"),
    ({"to": ["tensorboard"], "wandb": {"project": "p"}}, "not in [report] to"),
    ({"to": ["comet"]}, "[report] to must be one of"),
    ({"to": ["wandb"], "wandb": {"mode": "ofline"}}, "[report.wandb] mode must be one of"),
    ({"to": ["mlflow"], "mlflow": {"experiment_name": "x"}}, "did you mean 'experiment'"),
])
def test_report_settings_are_checked_and_never_hold_a_secret(world, tmp_path, table, message):
    from searcher.config import load_study
    from searcher.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        load_study(world.study(tmp_path, report=table))
    assert message in str(e.value) and "pw123456" not in str(e.value)


def test_a_token_in_mlflow_tracking_uri_from_the_environment_is_never_printed_or_stored(world, tmp_path, cli,
                                                                                        monkeypatch):
    """Issue 28: MLFLOW_TRACKING_URI=http://host/?access_token=... (a tracker that is down) printed the token in the
    tracker's warning. Nothing the study prints, logs or stores holds it."""
    need("mlflow")
    token = "tok3n-0f-the-tracker-0123456789"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_free_port()}/?access_token={token}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    path = world.study(tmp_path / "s", report={"to": ["mlflow"]}, study={"n_trials": 1}, search={"epochs": 1},
                       train={"latency": False})
    code, out, err = cli("optimize", path, "--no-progress")
    assert code == 0, err
    assert "report: mlflow" in err and "access_token=***" in err, err  # the warning, with the token hidden
    assert token not in out + err
    stored = sqlite_text(tmp_path / "s" / "tiny.db") + "".join(
        f.read_text(errors="replace") for f in (tmp_path / "s").rglob("*") if f.is_file() and f.suffix != ".db"
        and f.stat().st_size < 2_000_000)
    assert token not in stored


def sqlite_text(path: Path) -> str:
    """Every text value in a SQLite database (the study's records)."""
    import sqlite3

    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("select name from sqlite_master where type = 'table'")]
        return "\n".join(str(v) for t in tables for row in db.execute(f"select * from {t}") for v in row)


# --- MLflow's own promises ---


def test_mlflow_nests_trial_runs_under_one_study_run_and_survives_the_server_going_away(world, tmp_path, cli,
                                                                                      monkeypatch):
    """The server is killed in the second trial: the study completes with one warning; restarted, the next
    `searcher optimize` finishes the run it left running (the same run, from the study's records) and adds the
    trial it missed, under the same parent run."""
    from optuna.trial import TrialState

    from searcher import trackers
    from searcher.config import load_study
    from searcher.records.storage import load

    need("mlflow")
    server = MLflowServer(tmp_path / "mlflow").start()
    try:
        real = trackers.MLflowTracker.log_epoch

        def log_epoch(self, number, step, metrics):
            if number == 1 and step == 2:
                server.kill()  # mid-trial, mid-study
            real(self, number, step, metrics)

        monkeypatch.setattr(trackers.MLflowTracker, "log_epoch", log_epoch)
        path = world.study(tmp_path / "s", report={"to": ["mlflow"], "mlflow": {"tracking_uri": server.url}},
                           train={"latency": False})
        code, out, err = cli("optimize", path, "--no-progress")
        assert code == 0, err
        assert [t.state for t in load(load_study(path)).trials] == [TrialState.COMPLETE] * 3
        assert len([line for line in err.splitlines() if line.startswith("report: mlflow")]) == 1, err

        monkeypatch.setattr(trackers.MLflowTracker, "log_epoch", real)
        server.start()  # the same database
        client = server.client()
        (before,) = [r for r in client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
                     if r.data.tags.get("searcher.trial") == "1"]
        assert before.info.status == "RUNNING"  # incomplete: it never heard the trial end
        assert cli("optimize", path, "--no-progress")[0] == 0
        runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
        (parent,) = [r for r in runs if r.data.tags["searcher.level"] == "study"]
        children = {int(r.data.tags["searcher.trial"]): r for r in runs if r.data.tags["searcher.level"] == "trial"}
        assert sorted(children) == [0, 1, 2]
        assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children.values())
        assert children[1].info.run_id == before.info.run_id and children[1].info.status == "FINISHED"
        assert "filled in" in children[1].data.tags["searcher.note"]
        assert [m.step for m in client.get_metric_history(children[1].info.run_id, "accuracy")] == [1, 2, 3]
        assert "searcher.note" not in children[0].data.tags  # reported live
    finally:
        server.kill()


def test_a_new_tracker_is_one_module_and_its_registry_line(tmp_path):
    """Its [report.NAME] table, its place in [report] to and its secrets' message come from its own declaration:
    config keeps no hand copy (issue 28). Run in a fresh process: the registry is read when searcher.config is first
    imported, as it is when the registry line is in searcher/trackers/__init__.py."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent('''
        import dataclasses, sys
        from typing import Optional
        from searcher import trackers
        from searcher.trackers import Tracker

        @dataclasses.dataclass(frozen=True)
        class NewSettings:
            server: Optional[str] = dataclasses.field(default=None, metadata={"env": "NEW_SERVER"})

        class NewTracker(Tracker):
            name, module, extra, Settings, secrets = "newtracker", "json", "newtracker", NewSettings, ("NEW_KEY",)
            def start_study(self, study): return None
            def start_trial(self, trial): pass
            def log_epoch(self, number, step, metrics): pass
            def end_trial(self, end): pass

        trackers.TRACKERS["newtracker"] = NewTracker   # the registry line
        from searcher.config import parse_study
        from searcher.errors import ConfigError
        base = {"study": {"name": "s"}, "data": {"train": "t.csv", "validation": "v.csv"},
                "teacher": {"model": "m"}, "student": {"layers": [2], "hidden": [128], "init": "random"}}
        ok = parse_study({**base, "report": {"to": ["newtracker"], "newtracker": {"server": "http://h"}}}, "s.toml")
        assert ok.report.newtracker.server == "http://h", ok.report
        tracker = NewTracker(ok)
        assert tracker.setting("server") == "http://h"
        for table, message in (
                ({"to": ["newtracker"], "newtracker": {"server": "http://u:pw123456@h"}},
                 "put it in the environment (NEW_SERVER or NEW_KEY)"),
                ({"to": ["newtracker"], "newtracker": {"servr": "x"}}, "did you mean 'server'"),
                ({"newtracker": {"server": "x"}}, "not in [report] to"),
                ({"to": ["newtracker"], "newtracker": {"server": " "}}, "[report.newtracker] server must not be empty")):
            try:
                parse_study({**base, "report": table}, "s.toml")
            except ConfigError as e:
                assert message in str(e) and "pw123456" not in str(e), str(e)
            else:
                sys.exit(f"accepted {table}")
        print("ok")
    ''')
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                          env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
