"""searcher.records.trial: which trials are "best", on a real Optuna study of hand-made trials recorded as searcher records
them (no training)."""

from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from searcher.records import checkpoints, trial as trial_records
from searcher import hub, records
from searcher.cli import leaderboard
from searcher.config import parse_study

OBJECTIVES = ["accuracy@onnx-int8", "latency_ms@onnx-int8"]
DISTRIBUTIONS = {"learning_rate": FloatDistribution(1e-4, 1e-2, log=True), "layers": CategoricalDistribution([1, 2])}
# (accuracy, latency ms) as trials 0.. of the issue: trial 1 dominates trial 0 (same accuracy, faster); trial 2 is
# on the front (fastest); trial 3 is dominated by 0 and 1; trial 4 ties trial 1 exactly
VALUES = [(0.50, 0.25), (0.50, 0.16), (0.40, 0.10), (0.45, 0.30), (0.50, 0.16)]


def config_for(tmp_path, **study):
    raw = {"study": {"name": "deploy", "objectives": OBJECTIVES, "directions": ["maximize", "minimize"],
                     "keep_best": 1, **study},
           "data": {"train": "t.csv", "validation": "v.csv"}, "teacher": {"model": "m"},
           "student": {"layers": [1, 2], "hidden": [64], "init": "random"},
           "search": {"learning_rate": [1e-4, 1e-2]}, "export": {"formats": ["onnx", "onnx-int8"]},
           "hub": {"repo_id": "acme/deploy-t{trial}"}}
    return parse_study(raw, tmp_path / "deploy.toml")


def searcher_attrs(number: int, accuracy: float, latency: float, models: Path) -> dict:
    folder = checkpoints.trial_dir(models, number)
    return {
        records.HYPERPARAMS: {"learning_rate": 1e-3, "batch_size": 16, "temperature": 2.0, "alpha": 0.5, "epochs": 3},
        records.STUDENT: {"layers": 2, "hidden": 64, "heads": 1, "params": 1_000_000, "init": "random"},
        records.METRICS: {"accuracy": accuracy + 0.01, "loss": 0.6},
        records.FORMATS: {"onnx-int8": {"accuracy": accuracy, "single_median": latency, "size_mb": 1.2}},
        records.MODEL_DIR: str(folder),
    }


@pytest.fixture
def study(tmp_path) -> optuna.Study:
    """A multi-objective study as searcher leaves it: metric names set, one saved student folder per trial, and a
    pruned trial and a warm-start copy that dominates everything (neither may count)."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'deploy.db'}", study_name="deploy",
                                directions=["maximize", "minimize"])
    study.set_metric_names(OBJECTIVES)
    models = tmp_path / "models"
    for number, (accuracy, latency) in enumerate(VALUES):
        checkpoints.trial_dir(models, number).mkdir(parents=True)
        study.add_trial(create_trial(values=[accuracy, latency], params={"learning_rate": 1e-3, "layers": 2},
                                     distributions=DISTRIBUTIONS,
                                     user_attrs=searcher_attrs(number, accuracy, latency, models)))
    study.add_trial(create_trial(state=TrialState.PRUNED, user_attrs={records.PRUNE_REASON: "median pruner"}))
    study.add_trial(create_trial(values=[0.99, 0.01], params={"learning_rate": 1e-3, "layers": 2},
                                 distributions=DISTRIBUTIONS,
                                 user_attrs={records.WARM_START_SOURCE: "sqlite:////x.db::x",
                                             records.WARM_START_TRIAL: 0}))
    return study


def test_ranked_puts_the_pareto_front_first_best_by_the_first_objective(study):
    # front {1, 2, 4}: by accuracy, 1 and 4 tie on both objectives (trial number decides); then the front of the rest
    # {0}, then {3}
    assert [t.number for t in records.ranked(study)] == [1, 4, 2, 0, 3]
    assert records.best(study).number == 1
    assert [t.number for t in records.pareto(study)] == [1, 4, 2]
    assert [records.rank_of(study, n) for n in (1, 4, 2, 0, 3)] == [1, 2, 3, 4, 5]
    order = records.ranked(study)
    signs = [1.0, -1.0]
    for i, trial in enumerate(order):  # Pareto-consistent: nothing is ranked above a trial that dominates it
        assert not any(trial_records._dominates(later, trial, signs) for later in order[i + 1:])


def test_ties_are_broken_by_the_next_objectives_in_order_then_the_trial_number(tmp_path):
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    for values in ((0.5, 2.0, 1.0), (0.5, 1.0, 9.0), (0.5, 1.0, 3.0), (0.5, 1.0, 3.0)):
        study.add_trial(create_trial(values=list(values)))
    # the front is {0, 2, 3} (trial 1 is dominated by 2 and 3); all tie on accuracy, so the second objective puts 2
    # and 3 before 0, and the trial number 2 before 3
    assert [t.number for t in records.ranked(study)] == [2, 3, 0, 1]


def test_single_objective_order_is_by_value_then_trial_number():
    study = optuna.create_study(direction="minimize")
    for value in (0.3, 0.1, 0.2, 0.1):
        study.add_trial(create_trial(value=value))
    assert [t.number for t in records.ranked(study)] == [1, 3, 2, 0]
    assert [t.number for t in records.pareto(study)] == [1]


def test_every_best_names_the_front_trial(study, tmp_path):
    config = config_for(tmp_path)
    # card --best, push (default: best), [hub] push = "best": the same selection
    assert [t.number for t in records.select(study)] == [1]
    assert [t.trial.number for t in hub.targets(study, config, None, None, False, None)] == [1]
    assert [t.number for t in records.select(study, top=2)] == [1, 4]
    # the leaderboard (`searcher best`) ranks the same way
    rows = leaderboard.rows(study, config, top=10)
    assert [row["trial"] for row in rows] == [1, 4, 2, 0, 3]
    assert rows[0]["values"] == {"accuracy@onnx-int8": 0.50, "latency_ms@onnx-int8": 0.16}


def test_retention_keeps_the_best_and_the_front_and_removes_a_dominated_trial(study, tmp_path):
    models = tmp_path / "models"
    assert checkpoints.keep_set(study, keep_best=1) == {1, 4, 2}
    assert checkpoints.retain(study, models, keep_best=1) == [0, 3]  # trial 0 is dominated by trial 1
    assert sorted(p.name for p in models.iterdir() if p.is_dir()) == ["trial-0001", "trial-0002", "trial-0004"]


def test_optimize_names_the_front_trial_as_the_best_student(study, tmp_path, capsys):
    """The line `searcher optimize` ends with, for this study (trial 1's folder made whole, so that it is kept)."""
    from searcher.cli import commands

    config = config_for(tmp_path)
    folder = Path(records.best(study).user_attrs[records.MODEL_DIR])
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")
    commands._report_best(study, config)
    out = capsys.readouterr().out
    assert out == f"\nbest student: trial 1, accuracy@onnx-int8 0.5000, latency_ms@onnx-int8 0.1600: {folder}\n"
