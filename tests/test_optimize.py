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

from searcher.teachers import finetune, logits
from searcher.config import load_study
from searcher.records.trial import TrialRecord


def load(path: Path) -> optuna.Study:
    c = load_study(path)
    return optuna.load_study(study_name=c.study.name, storage=c.storage_url())


# ---------------------------------------------------------------------------------------------------------------
# The budget, on studies built directly with Optuna (no training)


def budget_config(tmp_path, n_trials=3):
    from searcher.config import parse_study

    return parse_study({"study": {"name": "b", "n_trials": n_trials, "heartbeat_interval": 1},
                        "data": {"train": "t.csv", "holdout": 0.1}, "teacher": {"model": "m"},
                        "student": {"layers": [2], "hidden": [128], "init": "random"}}, tmp_path / "b.toml")


def test_the_budget_counts_finished_running_and_queued_trials(tmp_path):
    from searcher.run import optimize as engine
    from searcher.search.claim import Claim

    c = budget_config(tmp_path)
    study = optuna.create_study()
    assert engine._claim_next(study, Claim(), c, wait_for_others=True) == ("", 1)
    study.add_trial(optuna.trial.create_trial(value=0.5))
    study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED))
    study.ask()  # a running trial: together three, the budget
    assert engine._claim_next(study, Claim(), c, wait_for_others=True) == ("the study has its n_trials = 3", 0)
    study.enqueue_trial({"x": 1.0})  # a queued trial (a Ctrl-C'd one, re-queued) is always run
    assert engine._claim_next(study, Claim(), c, wait_for_others=True) == ("", 1)
    failed = optuna.create_study()
    for _ in range(3):
        failed.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))
    assert engine._claim_next(failed, Claim(), c, wait_for_others=True) == ("", 1)  # failed trials do not count
    # a cohort asks for several: as many as the budget leaves, queued trials included
    assert engine._claim_next(failed, Claim(), c, wait_for_others=True, want=8) == ("", 3)
    assert engine._claim_next(study, Claim(), c, wait_for_others=True, want=8) == ("", 1)  # the queued one only
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))
    assert engine._claim_next(failed, Claim(),
                              budget_config(tmp_path, n_trials=5), wait_for_others=True, want=8) == ("", 5)


def test_a_worker_waits_for_running_trials_only_where_a_heartbeat_can_retry_them(tmp_path):
    from searcher.run import optimize as engine
    from searcher.records import storage
    from searcher.search.claim import Claim

    c = budget_config(tmp_path, n_trials=1)
    rdb = optuna.create_study(storage=storage.open_storage(f"sqlite:///{tmp_path / 'b.db'}", c), study_name="b")
    rdb.ask()
    assert engine._claim_next(rdb, Claim(), c, wait_for_others=True) == (engine.WAIT, 0)
    assert engine._claim_next(rdb, Claim(), c, wait_for_others=False)[0].startswith("the study has")
    journal = optuna.create_study(storage=storage.open_storage(f"journal:{tmp_path / 'b.log'}", c))
    journal.ask()  # no heartbeat: nobody would ever retry a dead worker's trial, so waiting could last forever
    assert engine._claim_next(journal, Claim(), c, wait_for_others=True)[0].startswith("the study has")


def test_a_dead_workers_retry_is_queued_before_another_worker_counts_the_budget(tmp_path):
    """A stale trial is failed first and its retry queued a moment later (Optuna's heartbeat callback). Another
    worker that counted the trials in between saw the failed trial and no retry, started a new trial, and the retry
    then made one trial too many (closed unrun as SurplusTrial: seen in CI as a second FAIL). Failing stale trials
    is part of the claimed "count, then create" step, so the other worker counts only after the retry exists."""
    import threading

    from searcher import internals
    from searcher.run import optimize as engine
    from searcher.records import storage
    from searcher.search.claim import for_study

    c = budget_config(tmp_path, n_trials=2)
    url = f"sqlite:///{tmp_path / 'b.db'}"
    b = optuna.create_study(storage=storage.open_storage(url, c), study_name="b")
    b.add_trial(optuna.trial.create_trial(params={"x": 0.0}, distributions={
        "x": optuna.distributions.FloatDistribution(0, 1)}, value=0.5))
    dead = b.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    internals.storage_of(b).record_heartbeat(dead._trial_id)
    other = optuna.load_study(study_name="b", storage=storage.open_storage(url, c))
    others: list = []

    def other_worker():  # the second worker's whole claim: count, and create a trial if the budget allows
        claim = for_study(other)
        verdict, _ = engine._claim_next(other, claim, c, wait_for_others=False)
        if not verdict:
            others.append(other.ask().number)
        claim.release()

    rdb = internals.rdb_storage(internals.storage_of(b))
    retry = rdb.heartbeat_stale_trial_callback
    thread = threading.Thread(target=other_worker)

    def between(study, trial):  # the other worker runs between the fail and the retry (or waits for the claim)
        thread.start()
        thread.join(timeout=5)
        retry(study, trial)

    rdb.heartbeat_stale_trial_callback = rdb.failed_trial_callback = between
    time.sleep((c.study.grace_period or 2 * c.study.heartbeat_interval) + 1.5)  # the dead worker's beat is stale
    claim = for_study(b)
    verdict, _ = engine._claim_next(b, claim, c, wait_for_others=False)
    assert verdict == ""
    mine = b.ask().number  # the queued retry
    claim.release()
    thread.join(timeout=60)
    states = [(t.number, t.state.name) for t in b.trials]
    alive = [t for t in b.trials if t.state != TrialState.FAIL]
    assert len(alive) == 2 and not others, states  # the retry and the finished trial: the budget, no surplus
    assert b.trials[mine].system_attrs.get("failed_trial") == dead.number, states


def test_three_failures_in_a_row_stop_the_worker_but_surplus_trials_do_not_count():
    from searcher.run import optimize as engine
    from searcher.errors import SearcherError

    fail = optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "OSError: disk"})
    surplus = optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "SurplusTrial: ..."})
    assert engine._consecutive_failures(fail, 0) == 1
    assert engine._consecutive_failures(surplus, 2) == 0
    assert engine._consecutive_failures(optuna.trial.create_trial(value=1.0), 2) == 0
    with pytest.raises(SearcherError, match="3 trials failed in a row .*OSError: disk"):
        engine._consecutive_failures(fail, 2)


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
        assert set(r.metrics) == {"loss", "cross_entropy", "accuracy", "f1", "precision", "recall"}
        assert set(r.test_metrics) == {"loss", "cross_entropy", "accuracy", "f1", "precision", "recall"}
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
    real = logits.compute_logits
    monkeypatch.setattr(logits, "compute_logits", lambda *a, **k: calls.append(1) or real(*a, **k))
    path = world.study(tmp_path, study={"n_trials": 3, "cache_dir": str(tmp_path / "cache")}, search={"epochs": 1},
                       train={"latency": False})
    assert cli("optimize", path, "--n-trials", "2")[0] == 0
    assert len(calls) == 2  # one forward pass over train and one over validation, for two trials
    assert cli("optimize", path, "--n-trials", "1")[0] == 0
    assert len(calls) == 2  # the second run reads the cache: zero teacher forward passes
    assert len(load(path).trials) == 3


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
    from searcher.tasks import _single  # the single-label kind owns the KD formula (searcher.losses re-exports it)

    monkeypatch.setattr(_single, "kd_loss", lambda s, *a: s.sum() * float("nan"))
    path = world.study(tmp_path, study={"n_trials": 1})
    assert cli("optimize", path)[0] == 0
    t = load(path).trials[0]
    assert t.state == TrialState.PRUNED
    assert t.user_attrs["prune_reason"].startswith("non-finite loss: training loss became nan at epoch 1")


def test_out_of_memory_retries_with_a_smaller_micro_batch(world, tmp_path, cli, monkeypatch):
    """The real training loop meets the real OOM error class: a student whose forward fails above 4 rows. Before
    each retry the failed attempt's model must be gone (freed after the handler, not while its traceback holds it)."""
    import gc
    import weakref

    from searcher.train import student

    real_build = student.build
    built = []

    def build(*args, **kwargs):
        gc.collect()
        assert all(ref() is None for ref in built), "the failed attempt's model was still alive at the retry"
        model, tokenizer = real_build(*args, **kwargs)
        forward = model.forward

        def tight_memory(*a, **k):
            if model.training and k["input_ids"].shape[0] > 4:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return forward(*a, **k)

        model.forward = tight_memory
        built.append(weakref.ref(model))
        return model, tokenizer

    monkeypatch.setattr(student, "build", build)
    path = world.study(tmp_path, study={"n_trials": 1}, search={"batch_size": 16})
    code, _, err = cli("optimize", path)
    assert code == 0, err
    assert "out of memory with micro-batch 16; retrying with 8" in err and "retrying with 4" in err
    assert len(built) == 3
    t = load(path).trials[0]
    assert t.state == TrialState.COMPLETE
    assert t.user_attrs["batch"] == {"effective": 16, "micro": 4, "accumulation": 4, "eval": 4}
    assert t.user_attrs["history"]["step"] == [12, 24, 36]  # 192 rows / 16 per step: the effective batch is kept


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
    real = finetune._fine_tune
    monkeypatch.setattr(finetune, "_fine_tune", lambda *a: fine_tunes.append(1) or real(*a))
    path = world.study(tmp_path, study={"n_trials": 2, "cache_dir": str(tmp_path / "cache")},
                       data={"train": str(world.data / "pairs_train.tsv"),
                             "validation": str(world.data / "pairs_dev.tsv"),
                             "text_columns": ["sentence1", "sentence2"]},
                       # two epochs on the tiny pairs leave the teacher at the majority class: it only has to
                       # carry the string labels here
                       teacher={"model": None, "base": str(world.base), "fine_tune": {"epochs": 2, "batch_size": 8,
                                                                                      "learning_rate": 2e-3,
                                                                                      "allow_baseline": True}},
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


def wait_for_running(db: Path, proc: subprocess.Popen, timeout: float = 500, min_epochs: int = 1) -> int:
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


SLOW = {"epochs": 20}  # ~0.3 s an epoch: a window to interrupt a trial in the middle

def test_ctrl_c_marks_the_trial_failed_and_the_next_run_resumes(world, tmp_path):
    path = world.study(tmp_path, study={"n_trials": 1}, search=SLOW)
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

    proc = spawn(path)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    study = load(path)
    (complete,) = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert complete.params == interrupted.params and complete.user_attrs.get("resumes_trial") == number


def test_sigkilled_worker_trial_is_retried_by_heartbeat(world, tmp_path):
    path = world.study(tmp_path, study={"n_trials": 1}, search=SLOW)
    proc = spawn(path)
    number = wait_for_running(tmp_path / "tiny.db", proc, min_epochs=2)
    proc.send_signal(signal.SIGSTOP)  # frozen, it cannot finish the trial before the kill however slow the machine
    assert load(path).trials[number].state == TrialState.RUNNING
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)

    # no sleep: the next worker waits for the stale heartbeat (grace_period = 3 s) on its own, however long it takes
    proc = spawn(path)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    study = load(path)
    killed = next(t for t in study.trials if t.number == number)
    assert killed.state == TrialState.FAIL
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params == killed.params
    assert killed.user_attrs["fail_reason"] == (f"worker stopped heartbeating (killed or lost); retried as trial "
                                                f"{retry[0].number}")
    assert "fail_reason" not in retry[0].user_attrs
    assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) == 1


def test_workers_seeded_alike_draw_different_trials_and_one_worker_is_reproducible(world, tmp_path):
    """Every worker builds its sampler from the same study seed; seeding per trial number keeps them apart."""
    from searcher.search import strategy

    config = load_study(world.study(tmp_path))
    study = optuna.create_study()
    values = []
    for _ in range(2):  # two workers sharing one study, each with a freshly built sampler
        study.sampler = strategy.sampler_for(config)
        values.append(study.ask().suggest_float("x", 0, 1))
    assert values[0] != values[1]
    first = [optuna.create_study(sampler=strategy.sampler_for(config)).ask().suggest_float("x", 0, 1) for _ in range(2)]
    assert first[0] == first[1] == values[0]  # one worker alone is reproducible


def test_a_trial_past_the_budget_is_closed_unrun_as_surplus(world, tmp_path):
    """The backstop where the storage has no claim lock (Redis journal, MySQL): a trial created after other workers
    filled n_trials is failed as SurplusTrial before anything is suggested or trained."""
    from searcher.run import optimize as engine
    from searcher.train import runtime
    from searcher.search.objective import Objective
    from searcher.search.prepare import prepare

    config = load_study(world.study(tmp_path, study={"n_trials": 1}))
    prepared = prepare(config, runtime.from_config(config.train))
    study = engine.open_study(prepared)
    study.add_trial(optuna.trial.create_trial(value=0.5))  # another worker's finished trial fills the budget
    study.optimize(Objective(prepared, budget=1), n_trials=1, catch=engine.TRIAL_ERRORS)
    surplus = study.trials[-1]
    assert surplus.state == TrialState.FAIL and not surplus.params and not surplus.intermediate_values
    assert surplus.user_attrs["fail_reason"].startswith("SurplusTrial: the study already has its n_trials = 1")


# ---------------------------------------------------------------------------------------------------------------
# Search efficiency: stopping early, the numeric encoding, no pruning after the last epoch


def test_patience_ends_the_study_early_with_the_reason_on_the_study_its_card_and_note(world, tmp_path, cli):
    from searcher import card
    from searcher.card import dashboard

    # no trial can beat the first by 0.5: after one more finished trial the study has stopped improving
    path = world.study(tmp_path, study={"n_trials": 6, "stop": {"patience": 1, "min_delta": 0.5}})
    code, _, err = cli("optimize", path)
    assert code == 0, err
    study = load(path)
    assert len(study.trials) == 2
    reason = study.user_attrs["searcher:stopped"]
    assert reason.startswith("patience: the best accuracy (") and "did not improve by 0.5 or more in the last 1 " \
                                                                   "finished trials" in reason
    assert f"stopped: {reason} (2 trial(s)" in err
    text = card.render(card.context(study, study.best_trial))
    assert f"- Stopped early: {card.escape(reason)}\n" in text
    assert f"stopped early: {reason}" in dashboard.note_markdown(study, load_study(path))
    # a second worker checks before it claims a trial: it runs none
    code, _, err = cli("optimize", path)
    assert code == 0 and len(load(path).trials) == 2 and "stopped: patience:" in err
    # the stop settings may change between runs; once the study runs on, the old reason is cleared
    path = world.study(tmp_path, study={"n_trials": 6, "stop": {"patience": 5}})
    assert cli("optimize", path, "--n-trials", "1")[0] == 0
    study = load(path)
    assert len(study.trials) == 3 and study.user_attrs["searcher:stopped"] == ""
    assert "Stopped early" not in card.render(card.context(study, study.best_trial))


def test_a_gp_study_trains_enqueued_batch_sizes_by_their_names(world, tmp_path, cli):
    path = world.study(tmp_path, study={"n_trials": 2, "sampler": {"type": "gp", "n_startup_trials": 1}},
                       search={"batch_size": [8, 16]},
                       enqueue=[{"batch_size": 16, "learning_rate": 4e-3, "temperature": 2.0, "alpha": 0.5,
                                 "layers": 2}])
    code, out, _ = cli("space", path)
    assert code == 0 and json.loads(out)["batch_size_log2"]["attributes"]["low"] == 3
    code, _, err = cli("optimize", path)
    assert code == 0, err
    study = load(path)
    first = study.trials[0]
    assert first.params["batch_size_log2"] == 4 and first.user_attrs["hyperparams"]["batch_size"] == 16
    assert first.user_attrs["history"]["step"] == [12, 24, 36]  # 192 rows / 16: the plan trained batch 16
    assert all("batch_size_log2" in t.params and t.state == TrialState.COMPLETE for t in study.trials)
    assert study.user_attrs["searcher:sampler"].startswith("GPSampler(n_startup_trials=1)")
    from searcher import card

    text = card.render(card.context(study, first))
    assert "batch_size = 16\n" in text and "batch_size_log2" not in text  # the card's [[enqueue]] lines


def test_a_trial_is_never_pruned_after_its_last_epoch(world, tmp_path, cli, monkeypatch):
    """Its epochs are all paid for by then: pruning would only throw the measured result away. With a pruner that
    always says stop, a 2-epoch trial stops after epoch 1 and a 1-epoch trial completes."""
    asked = []
    monkeypatch.setattr(optuna.trial.Trial, "should_prune", lambda self: asked.append(self.number) or True)
    for epochs, name in ((2, "two"), (1, "one")):
        path = world.study(tmp_path, name=name, study={"n_trials": 1, "pruner": "median"}, search={"epochs": epochs})
        assert cli("optimize", path)[0] == 0
        (trial,) = load(path).trials
        assert trial.state == (TrialState.PRUNED if epochs == 2 else TrialState.COMPLETE)
        assert list(trial.intermediate_values) == [1]
    assert len(asked) == 1


def test_a_phase_inside_another_counts_toward_the_outer_one():
    from searcher import timing

    timing.reset()
    with timing.phase("teacher fine-tune"):
        with timing.phase("training"):  # the teacher's own training is its fine-tune's time
            pass
    with timing.phase("training"):
        pass
    assert set(timing.totals()) == {"teacher fine-tune", "training"}
    # every phase that ran is shown, however short (a summary that drops short phases depends on the machine's speed)
    assert timing.summary(100.0) == "teacher fine-tune 0s (0%), training 0s (0%), other 100s (100%)"
    timing.reset()
    with timing.phase("training"):
        time.sleep(0.1)
    assert timing.summary(1.0).startswith("training 0s (1")


def test_optimize_says_where_the_time_went_by_phase(world, tmp_path, cli):
    path = world.study(tmp_path, study={"n_trials": 1, "cache_dir": str(tmp_path / "cache")},
                       search={"epochs": 1}, export={"formats": ["onnx"]})
    code, _, err = cli("optimize", path)
    assert code == 0, err
    (line,) = [line for line in err.splitlines() if line.startswith("time by phase")]
    assert "1 trial(s)" in line
    for name in ("teacher logits", "training", "evaluation", "ONNX export", "parity", "latency rounds", "other"):
        assert f"{name} " in line, line


# --- cohorts: trials of one shape trained together (searcher.train.cohort) ---------------------------------------

COHORT_TRIALS = [{"learning_rate": 2e-3, "temperature": 2.0, "alpha": 0.5},
                 {"learning_rate": 6e-3, "temperature": 4.0, "alpha": 0.2},
                 {"learning_rate": 4e-3, "temperature": 1.0, "alpha": 0.9}]


@pytest.fixture
def no_dropout(monkeypatch):
    """Random students without attention dropout ([search] hidden_dropout = 0 turns the rest off): with dropout a
    cohort member draws its own masks, so only a dropout-free member can equal its trial alone."""
    import functools

    import transformers

    monkeypatch.setattr(transformers, "BertConfig",
                        functools.partial(transformers.BertConfig, attention_probs_dropout_prob=0.0))


def cohort_study(world, directory, size, n_trials=3, **sections):
    return world.study(directory, study={"n_trials": n_trials, **sections.pop("study", {})},
                       student={"layers": [1], "hidden": [64], "init": "random"},
                       search={"learning_rate": [2e-3, 6e-3], "batch_size": 16, "temperature": [1.0, 4.0],
                               "alpha": [0.0, 1.0], "epochs": 2, "hidden_dropout": 0.0},
                       train={"cohort": size, "latency": False}, enqueue=COHORT_TRIALS[:n_trials], **sections)


def test_a_cohort_gives_each_trial_what_it_gets_alone(world, tmp_path, cli, no_dropout, monkeypatch):
    """Three queued trials of one shape: trained one at a time, in one cohort of 3, and in a cohort of 3 that runs
    out of memory (halved to 1 + 2): every trial's per-epoch losses and metrics agree to 1e-5, and each is its own
    trial with its checkpoint and a record of the cohort it trained in."""
    from searcher.train import cohort

    real = cohort.Cohort.epochs

    def out_of_memory_above_2(self):
        if len(self.members) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        yield from real(self)

    runs = {}
    for name, size in (("alone", 1), ("together", 3), ("halved", 3)):
        if name == "halved":
            monkeypatch.setattr(cohort.Cohort, "epochs", out_of_memory_above_2)
        path = cohort_study(world, tmp_path / name, size)
        code, out, err = cli("optimize", path)
        assert code == 0, err
        runs[name] = {t.number: t for t in load(path).trials}
    assert "out of memory in a cohort of 3; training them as cohorts of 1 and 2" in err
    for number, alone in runs["alone"].items():
        for name in ("together", "halved"):
            other = runs[name][number]
            assert other.state == alone.state == TrialState.COMPLETE
            assert other.params == alone.params
            for column in ("train_loss", "eval_loss", "accuracy"):
                assert other.user_attrs["history"][column] == pytest.approx(alone.user_attrs["history"][column],
                                                                            abs=1e-5), (name, column)
            assert other.value == pytest.approx(alone.value, abs=1e-5)
            assert Path(other.user_attrs["model_dir"]).is_dir()
        assert runs["together"][number].user_attrs["cohort"] == {"size": 3, "trials": [0, 1, 2]}
        assert "cohort" not in alone.user_attrs
    halved = runs["halved"]
    assert "cohort" not in halved[0].user_attrs and halved[1].user_attrs["cohort"] == {"size": 2, "trials": [1, 2]}


def test_a_diverged_member_stops_alone_and_its_cohort_goes_on(world, tmp_path, cli, no_dropout, monkeypatch):
    """One member's loss turns NaN: it is pruned with the reason and leaves the stack, the others finish (the
    unit test in test_cohort.py holds a remaining member to its values alone); the sampler's own trial (TPE with
    constant liar) fills the cohort of 4."""
    import torch

    from searcher.tasks import _single

    real = _single.kd_loss

    def nan_at_temperature_3_25(s, t, y, alpha, temperature):  # vmap-safe: no branching on a member's value
        return real(s, t, y, alpha, temperature) + torch.where(torch.as_tensor(temperature) == 3.25, float("nan"), 0.)

    monkeypatch.setattr(_single, "kd_loss", nan_at_temperature_3_25)
    trials = COHORT_TRIALS[:2] + [{"learning_rate": 2e-3, "temperature": 3.25, "alpha": 0.5}]
    paths = {}
    for size in (4,):
        paths[size] = world.study(tmp_path / str(size), study={"n_trials": 4},
                                  student={"layers": [1], "hidden": [64], "init": "random"},
                                  search={"learning_rate": [2e-3, 6e-3], "batch_size": 16, "temperature": [1.0, 4.0],
                                          "alpha": [0.0, 1.0], "epochs": 2, "hidden_dropout": 0.0},
                                  train={"cohort": size, "latency": False}, enqueue=trials)
        code, out, err = cli("optimize", paths[size])
        assert code == 0, err
    together = load(paths[4]).trials
    assert [t.state for t in together] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED,
                                           TrialState.COMPLETE]
    assert together[2].user_attrs["prune_reason"].startswith("non-finite loss: training loss became nan at epoch 1")
    assert all(t.user_attrs["cohort"] == {"size": 4, "trials": [0, 1, 2, 3]} for t in together)
    assert all(len(t.user_attrs["history"]["epoch"]) == 2 for t in together if t.state == TrialState.COMPLETE)


def test_ctrl_c_in_a_cohort_fails_and_requeues_every_member(world, tmp_path, cli, monkeypatch):
    from searcher.train import cohort

    def interrupted(self):
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr(cohort.Cohort, "epochs", interrupted)
    path = cohort_study(world, tmp_path, 3)
    code, out, err = cli("optimize", path)
    assert code != 0
    study = load(path)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    queued = [t for t in study.trials if t.state == TrialState.WAITING]
    assert len(failed) == 3 and sorted(t.user_attrs["resumes_trial"] for t in queued) == [0, 1, 2]
    monkeypatch.undo()
    code, out, err = cli("optimize", path)
    assert code == 0, err
    done = [t for t in load(path).trials if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["resumes_trial"] for t in done) == [0, 1, 2]


@pytest.mark.parametrize("value, message", [
    (0, "[train] cohort must be a positive integer or \"auto\", got 0"),
    (-2, "[train] cohort must be a positive integer or \"auto\", got -2"),
    ("many", "[train] cohort must be an integer or one of 'auto', got 'many'"),
])
def test_a_bad_cohort_is_one_line_and_writes_nothing(world, tmp_path, cli, value, message):
    path = world.study(tmp_path, train={"cohort": value})
    code, out, err = cli("optimize", path)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "tiny.db").exists() and not (tmp_path / "tiny").exists()


# --- kept students finished in the background ([train] finish_in_background) -------------------------------------

def background_study(world, directory, background, n_trials=3):
    return world.study(directory, study={"n_trials": n_trials},
                       student={"layers": [1], "hidden": [64], "init": "random"},
                       search={"learning_rate": [2e-3, 6e-3], "batch_size": 16, "temperature": [1.0, 4.0],
                               "alpha": [0.0, 1.0], "epochs": 2},
                       train={"finish_in_background": background, "latency": True},
                       export={"formats": ["onnx"]}, enqueue=COHORT_TRIALS[:n_trials])


def test_students_finished_in_the_background_give_what_they_give_in_place(world, tmp_path, cli, monkeypatch):
    """Each kept student's saving, ONNX export, parity and latency rounds run in a thread while the next trial
    trains, and its trial is told when they are done: the same queued trials give the same values and records as
    finished in place. Trial 0's finishing waits until trial 1 trains, so the test fails unless they overlap; a
    trial whose finishing fails fails alone, with its reason; the time line lists the background work apart."""
    import threading

    from searcher.errors import first_line
    from searcher.records import checkpoints
    from searcher.records.checkpoints import CheckpointError
    from searcher.search.objective import Objective

    runs, logs = {}, {}
    for background in (False, True):
        if background:
            second_trains = threading.Event()
            real_keep, real_train, real_save = Objective._keep, Objective._train, checkpoints.save

            def keep(self, trial, *args):
                if trial.number == 0:
                    assert second_trains.wait(timeout=300), "trial 1 never trained while trial 0 was finished"
                return real_keep(self, trial, *args)

            def train(self, trial, *args):
                if trial.number == 1:
                    second_trains.set()
                return real_train(self, trial, *args)

            def save(model, tokenizer, out, meta):
                if meta["trial"] == 2:
                    raise CheckpointError(f"cannot save the student to {out}: disk full")
                return real_save(model, tokenizer, out, meta)

            monkeypatch.setattr(Objective, "_keep", keep)
            monkeypatch.setattr(Objective, "_train", train)
            monkeypatch.setattr(checkpoints, "save", save)
        path = background_study(world, tmp_path / str(background), background)
        code, out, err = cli("optimize", path)
        assert code == 0, err
        runs[background], logs[background] = {t.number: t for t in load(path).trials}, err
    inline, beside = runs[False], runs[True]
    for number in (0, 1):
        assert inline[number].state == beside[number].state == TrialState.COMPLETE
        assert beside[number].value == pytest.approx(inline[number].value, abs=1e-6)
        timed = ("seconds", "samples_per_s")
        assert ({k: v for k, v in beside[number].user_attrs["history"].items() if k not in timed} ==
                {k: v for k, v in inline[number].user_attrs["history"].items() if k not in timed})
        for key in ("model_dir", "latency_ms", "formats", "size_mb", "metrics", "wall_time_s"):
            assert key in beside[number].user_attrs, key
        assert (Path(beside[number].user_attrs["model_dir"]) / "onnx" / "model.onnx").is_file()
        assert beside[number].user_attrs["latency_ms"]["beside_training"] is True  # the card says so
        assert "beside_training" not in inline[number].user_attrs["latency_ms"]
    assert beside[0].datetime_complete > beside[1].datetime_start  # told after the next trial began
    assert beside[2].state == TrialState.FAIL and inline[2].state == TrialState.COMPLETE
    assert "disk full" in beside[2].user_attrs["fail_reason"], first_line(str(beside[2].user_attrs))
    assert "in the background beside them: saving" in logs[True] and "ONNX export" in logs[True]
    assert "in the background" not in logs[False]


def test_ctrl_c_waits_for_students_finishing_in_the_background(world, tmp_path, cli, monkeypatch):
    """Ctrl-C while trial 1 trains: trial 0, trained already and finishing in the background, is still saved and
    told; trial 1 is failed and queued again; the next run completes the study."""
    from searcher.search.objective import Objective

    real_train = Objective._train

    def train(self, trial, *args):
        if trial.number == 1:
            raise KeyboardInterrupt
        return real_train(self, trial, *args)

    monkeypatch.setattr(Objective, "_train", train)
    path = background_study(world, tmp_path, True)
    code, out, err = cli("optimize", path)
    assert code != 0
    study = load(path)
    states = {t.number: t.state for t in study.trials}
    assert states[0] == TrialState.COMPLETE and states[1] == TrialState.FAIL, states
    assert [t.user_attrs.get("resumes_trial") for t in study.trials if t.state == TrialState.WAITING] == [None, 1]
    monkeypatch.undo()
    code, out, err = cli("optimize", path)
    assert code == 0, err
    assert sum(t.state == TrialState.COMPLETE for t in load(path).trials) == 3


def test_finishing_in_the_background_is_on_by_default_only_on_a_gpu():
    from searcher.train.runtime import finish_in_background

    assert finish_in_background("auto", "cuda:0") and not finish_in_background("auto", "cpu")
    assert finish_in_background(True, "cpu") and not finish_in_background(False, "cuda")
