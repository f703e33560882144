"""`searcher optimize` end to end on the tiny world: records, caches, pruning, retention, faults, resume."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from searcher import distill, teacher
from searcher.config import load_study
from searcher.records import TrialRecord


def load(path: Path) -> optuna.Study:
    c = load_study(path)
    return optuna.load_study(study_name=c.study.name, storage=c.storage_url())


def test_optimize_records_everything_a_card_needs(world, tmp_path, cli):
    path = world.study(tmp_path, study={"n_trials": 2}, data={"test": str(world.data / "test.csv")})
    code, out, err = cli("optimize", path)
    assert code == 0, err
    assert "trial   0 complete" in out and "trial   1 complete" in out
    study = load(path)
    assert study.metric_names == ["accuracy"]
    attrs = study.user_attrs
    assert attrs["teacher"]["metrics"]["validation"]["accuracy"] > 0.7
    assert attrs["teacher"]["layers"] == 2 and attrs["teacher"]["params"] > 0
    assert attrs["dataset"]["label_names"] == ["neg", "pos"]
    assert attrs["dataset"]["sizes"] == {"train": 192, "validation": 64, "test": 64}
    assert attrs["searcher:config"]["study"]["name"] == "tiny"
    assert {"transformers", "torch", "optuna", "searcher"} <= set(attrs["versions"])
    for t in study.trials:
        r = TrialRecord.from_trial(t)
        assert r.state == "COMPLETE"
        assert [row["epoch"] for row in r.history] == [1, 2, 3]
        assert list(t.intermediate_values) == [1, 2, 3]  # reported once per epoch, step = epoch
        assert t.intermediate_values[3] == r.metrics["accuracy"] == t.value
        assert set(r.metrics) == {"loss", "accuracy", "f1", "precision", "recall"}
        assert set(r.test_metrics) == {"loss", "accuracy", "f1", "precision", "recall"}
        assert r.student["layers"] in (1, 2) and r.student["hidden"] == 64 and r.student["heads"] == 1
        assert r.student["params"] > 0 and r.student["init"] == "random"
        assert r.batch["effective"] == r.hyperparams["batch_size"] and r.batch["accumulation"] == 1
        assert r.runtime == {"device": "cpu", "amp": "off"}
        assert r.wall_time_s > 0 and r.size_mb > 0 and r.latency_ms["single_median"] > 0
        assert r.kept
        json.dumps(t.user_attrs)  # JSON-safe: no numpy scalars
        saved = json.loads((Path(r.model_dir) / "config.json").read_text())
        assert saved["id2label"] == {"0": "neg", "1": "pos"} and saved["label2id"] == {"neg": 0, "pos": 1}
        assert (Path(r.model_dir) / "model.safetensors").is_file()
        assert json.loads((Path(r.model_dir) / "searcher_run.json").read_text())["trial"] == t.number


def test_teacher_logits_are_computed_once(world, tmp_path, cli, monkeypatch):
    calls = []
    real = teacher.compute_logits
    monkeypatch.setattr(teacher, "compute_logits", lambda *a, **k: calls.append(1) or real(*a, **k))
    path = world.study(tmp_path, study={"n_trials": 4, "cache_dir": str(tmp_path / "cache")})
    assert cli("optimize", path, "--n-trials", "2")[0] == 0
    assert len(calls) == 2  # one forward pass over train and one over validation, for two trials
    assert cli("optimize", path, "--n-trials", "2")[0] == 0
    assert len(calls) == 2  # the second run reads the cache: zero teacher forward passes
    assert len(load(path).trials) == 4


def test_n_trials_caps_the_study_total(world, tmp_path, cli):
    path = world.study(tmp_path, study={"n_trials": 2})
    assert cli("optimize", path)[0] == 0
    code, out, err = cli("optimize", path)
    assert code == 0 and "has its n_trials = 2" in err
    assert len(load(path).trials) == 2


def test_pruning_happens_at_epoch_boundaries(world, tmp_path, cli):
    path = world.study(tmp_path, study={"n_trials": 3, "pruner": {"type": "median", "n_startup_trials": 1}},
                       enqueue=[{"learning_rate": 6e-3, "batch_size": 8, "temperature": 2.0, "alpha": 0.5},
                                {"learning_rate": 2e-3, "batch_size": 16, "temperature": 1.0, "alpha": 1.0,
                                 "layers": 1}],
                       search={"learning_rate": [1e-6, 6e-3], "epochs": 4})
    # the second enqueued trial is far too slow a learner to keep up with the first at any epoch
    path.write_text(path.read_text().replace("learning_rate = 0.002\n", "learning_rate = 1e-06\n"))
    assert cli("optimize", path)[0] == 0
    study = load(path)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, [t.state for t in study.trials]
    for t in pruned:
        assert all(isinstance(step, int) and 1 <= step < 4 for step in t.intermediate_values)
        last = max(t.intermediate_values)
        assert list(t.intermediate_values) == list(range(1, last + 1))  # stopped right after an epoch's report
        assert f"median pruner at epoch {last}" in t.user_attrs["prune_reason"]
        assert len(t.user_attrs["history"]["epoch"]) == last
        assert not Path(t.user_attrs.get("model_dir", "/nonexistent")).exists()


def test_only_the_best_k_checkpoints_are_kept(world, tmp_path, cli):
    path = world.study(tmp_path, study={"n_trials": 4, "keep_best": 2})
    assert cli("optimize", path)[0] == 0
    study = load(path)
    ranked = sorted(study.trials, key=lambda t: (-t.value, t.number))
    kept = sorted(p.name for p in (tmp_path / "tiny" / "models").iterdir() if p.is_dir())
    assert kept == sorted(f"trial-{t.number:04d}" for t in ranked[:2])
    code, out, _ = cli("best", path)
    lines = [line for line in out.splitlines() if line[:1].isdigit()]
    assert [int(line.split()[1]) for line in lines] == [t.number for t in ranked]
    assert "(not kept)" in lines[2] and "(not kept)" in lines[3]
    assert str(tmp_path / "tiny" / "models" / f"trial-{ranked[0].number:04d}") in lines[0]
    assert "4 complete, 0 pruned, 0 failed" in out
    code, out, _ = cli("best", path, "--json", "--top", "1")
    assert json.loads(out)[0]["trial"] == ranked[0].number


def test_non_finite_loss_prunes_with_the_reason(world, tmp_path, cli, monkeypatch):
    monkeypatch.setattr(distill, "kd_loss", lambda s, *a: s.sum() * float("nan"))
    path = world.study(tmp_path, study={"n_trials": 1})
    assert cli("optimize", path)[0] == 0
    t = load(path).trials[0]
    assert t.state == TrialState.PRUNED
    assert t.user_attrs["prune_reason"].startswith("non-finite loss: training loss became nan at epoch 1")


def test_out_of_memory_retries_with_a_smaller_micro_batch(world, tmp_path, cli, monkeypatch):
    real = distill.train

    def tight_memory(model, train, tl, val, vtl, hp, run, on_epoch=None):
        if run.micro_for(hp.batch_size) > 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, train, tl, val, vtl, hp, run, on_epoch)

    monkeypatch.setattr(distill, "train", tight_memory)
    path = world.study(tmp_path, study={"n_trials": 1}, search={"batch_size": 16})
    code, _, err = cli("optimize", path)
    assert code == 0
    assert "out of memory with micro-batch 16; retrying with 8" in err
    t = load(path).trials[0]
    assert t.state == TrialState.COMPLETE
    assert t.user_attrs["batch"] == {"effective": 16, "micro": 4, "accumulation": 4, "eval": 4}


def test_multi_objective_study_has_a_pareto_front(world, tmp_path, cli):
    path = world.study(tmp_path, study={"n_trials": 3, "directions": ["maximize", "minimize"],
                                        "objectives": ["accuracy", "params_millions"], "pruner": None})
    assert cli("optimize", path)[0] == 0
    study = load(path)
    assert study.metric_names == ["accuracy", "params_millions"]
    assert all(len(t.values) == 2 for t in study.trials)
    assert 1 <= len(study.best_trials) <= 3
    for t in study.trials:
        assert t.values[1] == pytest.approx(t.user_attrs["student"]["params"] / 1e6)


def test_string_labels_reach_the_saved_model_config_with_a_fine_tuned_base(world, tmp_path, cli, monkeypatch):
    """[teacher] base: the teacher is fine-tuned once (cached) and the students get the data's label names."""
    fine_tunes = []
    real = teacher._fine_tune
    monkeypatch.setattr(teacher, "_fine_tune", lambda *a: fine_tunes.append(1) or real(*a))
    path = world.study(tmp_path, study={"n_trials": 2, "cache_dir": str(tmp_path / "cache")},
                       data={"train": str(world.data / "pairs_train.tsv"),
                             "validation": str(world.data / "pairs_dev.tsv"),
                             "text_columns": ["sentence1", "sentence2"]},
                       teacher={"model": None, "base": str(world.base), "fine_tune": {"epochs": 2, "batch_size": 8,
                                                                                      "learning_rate": 2e-3}},
                       student={"init": "teacher", "hidden": None, "layers": [1]})
    assert cli("optimize", path, "--n-trials", "1")[0] == 0
    assert cli("optimize", path, "--n-trials", "1")[0] == 0
    assert len(fine_tunes) == 1
    study = load(path)
    assert study.user_attrs["teacher"]["fine_tuned_by_searcher"] is True
    model_dir = Path(study.best_trial.user_attrs["model_dir"])
    cfg = json.loads((model_dir / "config.json").read_text())
    assert cfg["id2label"] == {"0": "entailment", "1": "not_entailment"}
    assert study.best_trial.user_attrs["student"]["init"] == "teacher"


@pytest.mark.parametrize("change, message", [
    ({"data": {"train": "nope.csv"}}, "does not exist"),
    ({"data": {"label_column": "missing"}}, "has no column 'missing'"),
    ({"student": {"hidden": [100]}}, "hidden 100 is not a multiple of 64"),
    ({"search": {"learning_rate": [0.1, 0.01]}}, "is impossible (low > high)"),
    ({"search": {"epochs": "many"}}, "[search] epochs must be an integer"),
    ({"study": {"n_trial": 3}}, "unknown key 'n_trial'; did you mean 'n_trials'?"),
    ({"student": {"init": "teacher", "hidden": [128]}}, "hidden must be the teacher's 64"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(world, tmp_path, cli, change, message):
    path = world.study(tmp_path, **change)
    code, out, err = cli("optimize", path)
    assert code == 2
    assert err.strip().count("\n") == 0 and message in err and "Traceback" not in err
    assert not (tmp_path / "tiny.db").exists() and not (tmp_path / "tiny").exists()


def test_teacher_label_count_must_match_the_data(world, tmp_path, cli):
    from conftest import make_bert, make_tokenizer

    three = tmp_path / "teacher3"
    make_bert(num_labels=3).save_pretrained(three)
    make_tokenizer().save_pretrained(three)
    path = world.study(tmp_path, teacher={"model": str(three)})
    code, _, err = cli("optimize", path)
    assert code == 2 and "predicts 3 labels but the data has 2" in err
    assert not (tmp_path / "tiny.db").exists()


# ---------------------------------------------------------------------------------------------------------------
# Faults in real worker processes


def _sigint_default() -> None:
    # a shell that starts the tests with `&` (no job control) makes them ignore SIGINT, and children inherit that;
    # the worker must see Ctrl-C as a user's terminal would send it
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn(path: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "searcher.cli", "optimize", str(path), "--no-progress", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            preexec_fn=_sigint_default)


def wait_for_running(db: Path, proc: subprocess.Popen, timeout: float = 120, min_epochs: int = 1) -> int:
    """Block until some trial is RUNNING and has reported `min_epochs`; return its number."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        if db.exists():
            try:
                con = sqlite3.connect(db)
                rows = con.execute(
                    "SELECT t.number, COUNT(v.trial_intermediate_value_id) FROM trials t LEFT JOIN "
                    "trial_intermediate_values v ON v.trial_id = t.trial_id WHERE t.state = 'RUNNING' "
                    "GROUP BY t.trial_id").fetchall()
                con.close()
            except sqlite3.OperationalError:
                rows = []
            for number, epochs in rows:
                if epochs >= min_epochs:
                    return number
        time.sleep(0.2)
    raise AssertionError("no trial started in time")


SLOW = {"epochs": 40}  # ~0.3 s an epoch: a window to interrupt a trial in the middle


def fast(path: Path) -> None:
    """Fewer epochs for the run that resumes (epochs is fixed, not a trial parameter): keeps the test short."""
    path.write_text(path.read_text().replace("epochs = 40", "epochs = 2"))


def test_ctrl_c_marks_the_trial_failed_and_the_next_run_resumes(world, tmp_path):
    path = world.study(tmp_path, study={"n_trials": 2}, search=SLOW)
    proc = spawn(path)
    number = wait_for_running(tmp_path / "tiny.db", proc)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "interrupted" in out and "Traceback" not in out
    study = load(path)
    interrupted = next(t for t in study.trials if t.number == number)
    assert interrupted.state == TrialState.FAIL
    assert "interrupted" in interrupted.user_attrs["fail_reason"]
    waiting = [t for t in study.trials if t.state == TrialState.WAITING]
    assert len(waiting) == 1 and waiting[0].system_attrs["fixed_params"] == interrupted.params

    fast(path)
    proc = spawn(path)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    study = load(path)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 2
    assert any(t.params == interrupted.params and t.user_attrs.get("resumes_trial") == number for t in complete)


def test_sigkilled_worker_trial_is_retried_by_heartbeat(world, tmp_path):
    path = world.study(tmp_path, study={"n_trials": 1}, search=SLOW)
    proc = spawn(path)
    number = wait_for_running(tmp_path / "tiny.db", proc, min_epochs=2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(4)  # longer than grace_period = 3 s: the heartbeat is stale

    fast(path)
    proc = spawn(path)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    study = load(path)
    killed = next(t for t in study.trials if t.number == number)
    assert killed.state == TrialState.FAIL
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params == killed.params
    assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) == 1


def test_workers_seeded_alike_draw_different_trials_and_one_worker_is_reproducible(world, tmp_path):
    """Every worker builds its sampler from the same study seed; seeding per trial number keeps them apart."""
    from searcher import storage

    config = load_study(world.study(tmp_path))
    study = optuna.create_study()
    values = []
    for _ in range(2):  # two workers sharing one study, each with a freshly built sampler
        study.sampler = storage.sampler(config)
        values.append(study.ask().suggest_float("x", 0, 1))
    assert values[0] != values[1]
    first = [optuna.create_study(sampler=storage.sampler(config)).ask().suggest_float("x", 0, 1) for _ in range(2)]
    assert first[0] == first[1] == values[0]  # one worker alone is reproducible


def test_a_trial_past_the_budget_is_closed_unrun_as_surplus(world, tmp_path):
    """The backstop where the storage has no claim lock (Redis journal, MySQL): a trial created after other workers
    filled n_trials is failed as SurplusTrial before anything is suggested or trained."""
    from searcher import optimize as engine, runtime
    from searcher.objective import Objective
    from searcher.prepare import prepare

    config = load_study(world.study(tmp_path, study={"n_trials": 1}))
    prepared = prepare(config, runtime.from_config(config.train))
    study = engine.open_study(prepared)
    study.add_trial(optuna.trial.create_trial(value=0.5))  # another worker's finished trial fills the budget
    study.optimize(Objective(prepared, budget=1), n_trials=1, catch=engine.TRIAL_ERRORS)
    surplus = study.trials[-1]
    assert surplus.state == TrialState.FAIL and not surplus.params and not surplus.intermediate_values
    assert surplus.user_attrs["fail_reason"].startswith("SurplusTrial: the study already has its n_trials = 1")
