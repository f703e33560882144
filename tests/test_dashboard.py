"""Inspection: optuna-dashboard (through `searcher dashboard`), the optuna CLI, and ask/tell with run-trial."""

import html
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest

from searcher.card import attached, dashboard
from searcher.config import load_study

OPTUNA = [str(Path(sys.executable).parent / "optuna")]  # the optuna console script of this environment


@pytest.fixture(scope="module")
def finished(finished_study, tmp_path_factory):
    """A copy of the shared finished study (the dashboard and its hooks write notes and artifacts into it)."""
    from conftest import copy_study

    return copy_study(finished_study, tmp_path_factory.mktemp("dash") / "study")


def study_of(path):
    return optuna.load_study(study_name="tiny", storage=load_study(path).storage_url())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, binary=False):
    with urllib.request.urlopen(url, timeout=10) as r:
        body = r.read()
    return body if binary else json.loads(body)


@pytest.fixture(scope="module")
def served(finished):
    """`searcher dashboard` on a free loopback port; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "searcher.cli", "dashboard", str(finished), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            get(base + "/api/meta")
            break
        except OSError:
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.3)
    else:
        proc.kill()
        raise AssertionError("optuna-dashboard did not start")
    yield base
    proc.terminate()
    out, _ = proc.communicate(timeout=10)
    assert f"http://127.0.0.1:{port}/dashboard/" in out


def test_dashboard_api_shows_everything_the_study_did(finished, served, cli, tmp_path):
    studies = get(served + "/api/studies")["study_summaries"]
    (summary,) = [s for s in studies if s["study_name"] == "tiny"]
    detail = get(served + f"/api/studies/{summary['study_id']}")
    assert detail["objective_names"] == ["accuracy"]
    study = study_of(finished)
    assert len(detail["trials"]) == len(study.trials) == 4
    for api_trial, trial in zip(detail["trials"], study.trials):
        params = {p["name"]: p["param_external_value"] for p in api_trial["params"]}
        assert set(params) == set(trial.params) >= {"learning_rate", "batch_size", "temperature", "alpha", "layers"}
        steps = [v["step"] for v in api_trial["intermediate_values"]]
        assert steps == list(range(1, len(steps) + 1)) and steps  # one value per epoch: the learning curves
        attrs = {a["key"]: a["value"] for a in api_trial["user_attrs"]}
        assert {"hyperparams", "student", "batch", "runtime", "history"} <= set(attrs)
        if trial.state.name == "COMPLETE":
            assert {"metrics", "latency_ms", "size_mb", "model_dir", "wall_time_s"} <= set(attrs)
        assert all(len(str(v)) < 2000 for v in attrs.values())  # readable attrs: no giant blobs
        names = sorted(a["filename"] for a in api_trial["artifacts"])
        assert "epochs.csv" in names
        kept = trial.state.name == "COMPLETE" and Path(trial.user_attrs["model_dir"]).exists()
        assert ("README.md" in names) == kept  # one current card per kept trial

    # a card downloaded from the dashboard equals `searcher card`'s README.md
    best = study.best_trial
    api_best = next(t for t in detail["trials"] if t["number"] == best.number)
    card_meta = next(a for a in api_best["artifacts"] if a["filename"] == "README.md")
    downloaded = get(served + f"/artifacts/{summary['study_id']}/{api_best['trial_id']}/{card_meta['artifact_id']}",
                     binary=True)
    assert cli("card", finished, "--trial", best.number, "--out", tmp_path)[0] == 0
    assert downloaded == (tmp_path / f"trial-{best.number:04d}" / "README.md").read_bytes()
    epochs_meta = next(a for a in api_best["artifacts"] if a["filename"] == "epochs.csv")
    csv_text = get(served + f"/artifacts/{summary['study_id']}/{api_best['trial_id']}/{epochs_meta['artifact_id']}",
                   binary=True).decode()
    assert csv_text.splitlines()[0].startswith("epoch,step,train_loss,eval_loss,cross_entropy,accuracy")
    assert len(csv_text.splitlines()) == 1 + len(best.intermediate_values)

    note = detail["note"]["body"]
    assert "## Leaderboard" in note and "**Teacher**" in note and f"| 1 | {best.number} |" in note
    (graph,) = detail["plotly_graph_objects"]
    assert graph["id"] == dashboard.FIGURE_ID
    figure = json.loads(graph["graph_object"])
    assert figure["layout"]["xaxis"]["title"]["text"] == "student parameters (millions)"
    assert len(figure["data"][0]["x"]) == len([t for t in study.trials if t.state.name == "COMPLETE"])


def test_cards_follow_the_kept_trials(finished):
    study = study_of(finished)
    config = load_study(finished)
    ranked = sorted([t for t in study.trials if t.state.name == "COMPLETE"], key=lambda t: (-t.value, t.number))
    for t in ranked[:2]:
        assert attached.card_artifact(study, config, t.number).startswith("---\n")
    for t in ranked[2:]:
        assert attached.card_artifact(study, config, t.number) is None


def optuna_cli(*args):
    out = subprocess.run([*OPTUNA, *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_optuna_cli_reads_the_study_as_is(finished):
    url = load_study(finished).storage_url()
    trials = json.loads(optuna_cli("trials", "--storage", url, "--study-name", "tiny", "-f", "json"))
    assert len(trials) == 4
    assert {"learning_rate", "batch_size", "temperature", "alpha", "layers"} == set(trials[0]["params"])
    assert {"metrics", "student", "history", "model_dir"} <= set(trials[0]["user_attrs"])
    best = json.loads(optuna_cli("best-trial", "--storage", url, "--study-name", "tiny", "-f", "json"))
    study = study_of(finished)
    assert best["number"] == study.best_trial.number
    assert best["value"] == {"accuracy": study.best_value}  # values are labelled with the metric names
    studies = json.loads(optuna_cli("studies", "--storage", url, "-f", "json"))
    assert studies[0]["name"] == "tiny" and studies[0]["n_trials"] == 4


def test_ask_tell_round_trip_with_run_trial(world, tmp_path, cli):
    path = world.study(tmp_path, study={"n_trials": 5})
    url = load_study(path).storage_url()
    code, space, _ = cli("space", path)
    assert code == 0
    optuna_cli("create-study", "--storage", url, "--study-name", "tiny", "--direction", "maximize")
    asked = json.loads(optuna_cli("ask", "--storage", url, "--study-name", "tiny", "--search-space", space.strip(),
                                  "-f", "json"))
    number = asked["number"]
    code, out, err = cli("run-trial", path, "--trial-number", number)
    assert code == 0, err
    assert f"trial {number:>3} complete" in out
    trials = json.loads(optuna_cli("trials", "--storage", url, "--study-name", "tiny", "-f", "json"))
    (t,) = trials
    assert t["state"] == "COMPLETE" and t["number"] == number
    assert t["params"] == asked["params"]
    assert t["user_attrs"]["metrics"]["accuracy"] == t["value"]["accuracy"]
    assert Path(t["user_attrs"]["model_dir"]).is_dir()
    code, _, err = cli("run-trial", path, "--trial-number", number)
    assert code == 2 and "is complete, not running" in err


def test_run_trial_trains_several_asked_trials_of_one_shape_as_a_cohort(world, tmp_path, cli):
    path = world.study(tmp_path, study={"n_trials": 5}, student={"layers": [1]}, search={"batch_size": 16,
                                                                                         "epochs": 1})
    url = load_study(path).storage_url()
    code, space, _ = cli("space", path)
    optuna_cli("create-study", "--storage", url, "--study-name", "tiny", "--direction", "maximize")
    ask = ("ask", "--storage", url, "--study-name", "tiny", "--search-space", space.strip(), "-f", "json")
    numbers = [json.loads(optuna_cli(*ask))["number"] for _ in range(3)]
    code, _, err = cli("run-trial", path, "--trial-number", *numbers, 99)
    assert code == 2 and "has no trial 99" in err  # every number is checked before anything trains
    trials = json.loads(optuna_cli("trials", "--storage", url, "--study-name", "tiny", "-f", "json"))
    assert [t["state"] for t in trials] == ["RUNNING"] * 3
    code, out, err = cli("run-trial", path, "--trial-number", *numbers)
    assert code == 0, err
    assert all(f"trial {n:>3} complete" in out for n in numbers)
    trials = json.loads(optuna_cli("trials", "--storage", url, "--study-name", "tiny", "-f", "json"))
    assert [t["state"] for t in trials] == ["COMPLETE"] * 3
    assert all(t["user_attrs"]["cohort"] == {"size": 3, "trials": numbers} for t in trials)


def test_run_trial_refuses_changed_data_before_the_teacher_labels_it(world, tmp_path, cli):
    import shutil

    train = tmp_path / "train.csv"
    shutil.copy(world.data / "train.csv", train)
    path = world.study(tmp_path, study={"n_trials": 5}, data={"train": str(train)}, search={"epochs": 1})
    url = load_study(path).storage_url()
    code, space, _ = cli("space", path)
    optuna_cli("create-study", "--storage", url, "--study-name", "tiny", "--direction", "maximize")
    ask = ("ask", "--storage", url, "--study-name", "tiny", "--search-space", space.strip(), "-f", "json")
    code, _, err = cli("run-trial", path, "--trial-number", json.loads(optuna_cli(*ask))["number"])
    assert code == 0, err
    with train.open("a") as f:
        f.write("a sentence the teacher has never seen,pos\n")
    code, _, err = cli("run-trial", path, "--trial-number", json.loads(optuna_cli(*ask))["number"])
    assert code == 2 and "[data] content" in err and "use a new [study] name" in err, err
    assert "teacher logits: computing" not in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.browser
def test_dashboard_renders_in_headless_chromium(chromium, finished, served, tmp_path):
    out_dir = Path(os.environ.get("SEARCHER_BROWSER_ARTIFACTS", tmp_path))
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = next(s for s in get(served + "/api/studies")["study_summaries"] if s["study_name"] == "tiny")
    url = f"{served}/dashboard/studies/{summary['study_id']}/trials"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--disable-quic", f"--user-data-dir={tmp_path / 'profile'}",
             "--virtual-time-budget=15000", "--window-size=1400,1000"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    shot = out_dir / "dashboard.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", url], capture_output=True, timeout=120)
    text = html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<style.*?</style>", "", dom.stdout,
                                                                             flags=re.S))))
    n = len(study_of(finished).trials)
    assert f"tiny (id={summary['study_id']})" in text, text[:2000]  # rendered by the page's JavaScript, not the HTML
    assert f"{n} Trials" in text, text[:2000]
    assert shot.is_file() and shot.stat().st_size > 10_000
