"""The search space on in-memory studies: distributions, the conditional hidden size, plans and [[enqueue]] checks."""

import json

import optuna
import pytest

from searcher import hyperparams
from searcher.search import space
from searcher.config import parse_study
from searcher.errors import ConfigError

BASE = {"study": {"name": "s", "seed": 3}, "data": {"train": "t.csv", "validation": "v.csv"},
        "teacher": {"model": "m"}}


def config(tmp_path, student=None, search=None, enqueue=None):
    raw = {**BASE, "student": student or {"layers": [2, 4], "hidden": [128, 256], "init": ["random", "teacher"]},
           "search": search or {}}
    if enqueue:
        raw["enqueue"] = enqueue
    return parse_study(raw, tmp_path / "s.toml")


def test_only_searched_values_become_distributions(tmp_path):
    c = config(tmp_path, search={"epochs": 2, "batch_size": [32]})
    dists = space.distributions(c)
    assert set(dists) == {"learning_rate", "temperature", "alpha", "init", "layers", "hidden"}
    assert dists["learning_rate"].log and dists["init"].choices == ("random", "teacher")
    assert json.loads(space.search_space_json(c))["layers"]["name"] == "CategoricalDistribution"


def test_hidden_is_only_suggested_for_students_that_are_not_teacher_initialised(tmp_path):
    c = config(tmp_path)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        plan = space.suggest(trial, c)
        seen.add(plan.student.init)
        assert ("hidden" in trial.params) == (plan.student.init != "teacher")
        assert plan.student.hidden == (None if plan.student.init == "teacher" else trial.params["hidden"])
        assert plan.hyperparams.seed == 3 and plan.hyperparams.epochs == 3
        study.tell(trial, 0.5)
    assert seen == {"random", "teacher"}


def test_plan_from_values_casts_every_hyperparameter(tmp_path):
    c = config(tmp_path, student={"layers": [2], "hidden": [128], "init": "random"})
    values = {"learning_rate": 1e-4, "batch_size": 32.0, "temperature": 2, "alpha": 0, "epochs": 3,
              "weight_decay": 0, "warmup_ratio": 0, "max_grad_norm": 1, "hidden_dropout": 0.1, "augment": 0, "layers": 2,
              "hidden": 128}
    hp = space.plan_from_values(c, values).hyperparams
    assert type(hp.batch_size) is int and type(hp.temperature) is float and type(hp.alpha) is float
    # a logits-only study has no weight of another loss, even where the values carry one
    assert not hasattr(hp, "hidden_weight") and "hidden_weight" not in space.dimensions(c)
    assert not hasattr(space.plan_from_values(c, {**values, "hidden_weight": 2}).hyperparams, "hidden_weight")
    layered = parse_study({**BASE, "student": {"layers": [2], "hidden": [128], "init": "random"},
                           "distill": {"losses": ["logits", "hidden_mse"]}}, tmp_path / "l.toml")
    # entries the values do not carry (a loss's weight, added after these values were recorded) take their default
    hp = space.plan_from_values(layered, values).hyperparams
    assert hp.hidden_weight == hyperparams.BY_NAME["hidden_weight"].default.value
    assert not hasattr(hp, "cls_weight")
    hp = space.plan_from_values(layered, {**values, "hidden_weight": 2}).hyperparams
    assert type(hp.hidden_weight) is float and hp.hidden_weight == 2.0
    with pytest.raises(KeyError, match="learning_rate"):
        space.plan_from_values(c, {k: v for k, v in values.items() if k != "learning_rate"})


@pytest.mark.parametrize("entry, message", [
    ({"learning_rate": 5.0}, "learning_rate = 5.0 is outside the searched range [1e-05, 0.001] (log)"),
    ({"epochs": 4}, "epochs = 4 but the study fixes it to 3"),
    ({"layrs": 2}, "unknown parameter 'layrs'"),
    ({"hidden": 192}, "hidden = 192 is outside the searched range [128, 256]"),
])
def test_enqueued_values_must_fit_the_space(tmp_path, entry, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        space.check_enqueued(config(tmp_path, enqueue=[entry]))


def test_enqueued_values_inside_the_space_pass_through(tmp_path):
    entry = {"learning_rate": 0.00021185586235152412, "layers": 4, "init": "teacher", "epochs": 3}
    assert space.check_enqueued(config(tmp_path, enqueue=[entry])) == [
        {"learning_rate": 0.00021185586235152412, "layers": 4, "init": "teacher"}]


def test_describe_ranges_names_every_dimension(tmp_path):
    ranges = space.describe_ranges(config(tmp_path))
    assert ranges["learning_rate"] == "[1e-05, 0.001] (log)" and ranges["epochs"] == "3"
    assert ranges["init"] == "['random', 'teacher']" and ranges["hidden_dropout"] == "0.1"


# ---------------------------------------------------------------------------------------------------------------
# The numeric encoding (GP, CMA-ES): integer ranges that hold exactly the listed values; the same plans


def numeric(tmp_path, sampler="gp", student=None, search=None, enqueue=None):
    raw = {**BASE, "study": {**BASE["study"], "sampler": sampler},
           "student": student or {"layers": [2, 4, 6], "hidden": [128, 256, 512], "init": ["random", "teacher"]},
           "search": search or {"batch_size": [16, 32, 64, 128]}}
    if enqueue:
        raw["enqueue"] = enqueue
    return parse_study(raw, tmp_path / "s.toml")


def test_gp_and_cmaes_see_integers_where_tpe_sees_categories(tmp_path):
    # CMA-ES needs a fixed space: its study searches random students only (no conditional hidden size)
    for sampler, init in (("gp", ["random", "teacher"]), ("cmaes", "random")):
        dists = space.distributions(numeric(tmp_path, sampler, student={"layers": [2, 4, 6], "hidden": [128, 256, 512],
                                                                         "init": init}))
        assert dists["layers"] == optuna.distributions.IntDistribution(2, 6, step=2)
        assert dists["batch_size_log2"] == optuna.distributions.IntDistribution(4, 7)
        assert dists["hidden_log2"] == optuna.distributions.IntDistribution(7, 9)
        assert "batch_size" not in dists and "hidden" not in dists
    assert dists.get("init") is None
    dists = space.distributions(numeric(tmp_path, "gp"))
    assert dists["init"].choices == ("random", "teacher")  # a category stays one
    tpe = space.distributions(numeric(tmp_path, "tpe"))
    assert tpe["batch_size"].choices == (16, 32, 64, 128) and tpe["layers"].choices == (2, 4, 6)
    # evenly spaced hidden sizes are a range with a step; a list neither evenly spaced nor doubling stays a category
    odd = space.distributions(numeric(tmp_path, student={"layers": [2, 3, 6], "hidden": [128, 256], "init": "random"},
                                      search={"batch_size": [16, 48]}))
    assert odd["hidden"] == optuna.distributions.IntDistribution(128, 256, step=128)
    assert odd["layers"].choices == (2, 3, 6) and odd["batch_size"] == optuna.distributions.IntDistribution(16, 48,
                                                                                                          step=32)
    assert json.loads(space.search_space_json(numeric(tmp_path)))["batch_size_log2"]["name"] == "IntDistribution"
    assert space.describe_ranges(numeric(tmp_path))["batch_size"] == "[16, 32, 64, 128]"  # cards keep the study's


def test_the_numeric_encoding_gives_the_same_plans(tmp_path):
    """Every numeric trial, replayed through the categorical space with its study-file values, plans the same."""
    from searcher.hyperparams import user_params

    num, cat = numeric(tmp_path, "gp"), numeric(tmp_path, "tpe")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    replay = optuna.create_study()
    seen = set()
    for _ in range(20):
        trial = study.ask()
        plan = space.suggest(trial, num)
        values = user_params(trial.params)
        assert set(values) <= set(space.dimensions(num)) and "batch_size_log2" in trial.params
        replay.enqueue_trial(values)
        again = replay.ask()
        assert space.suggest(again, cat) == plan
        assert again.params == values  # the categorical space asks exactly the study-file values
        assert space.check_enqueued(numeric(tmp_path, enqueue=[values]))[0] == trial.params  # and back
        seen.add((plan.hyperparams.batch_size, plan.student.layers, plan.student.hidden))
        study.tell(trial, 0.5)
        replay.tell(again, 0.5)
    assert {b for b, _, _ in seen} == {16, 32, 64, 128} and {h for _, _, h in seen} == {None, 128, 256, 512}


def test_enqueued_batch_sizes_keep_their_names_under_the_numeric_encoding(tmp_path):
    c = numeric(tmp_path, search={"batch_size": [256, 512, 1024]},
                enqueue=[{"batch_size": 1024, "layers": 4, "init": "random", "hidden": 512}, {"batch_size_log2": 8}])
    assert space.check_enqueued(c) == [{"batch_size_log2": 10, "layers": 4, "init": "random", "hidden_log2": 9},
                                       {"batch_size_log2": 8}]
    study = optuna.create_study()
    study.enqueue_trial(space.check_enqueued(c)[0])
    plan = space.suggest(study.ask(), c)
    assert plan.hyperparams.batch_size == 1024 and plan.student.hidden == 512 and plan.student.layers == 4
    with pytest.raises(ConfigError, match=r"batch_size = 768 is outside the searched range \[256, 512, 1024\]"):
        space.check_enqueued(numeric(tmp_path, search={"batch_size": [256, 512, 1024]},
                                     enqueue=[{"batch_size": 768}]))
    with pytest.raises(ConfigError, match="batch_size is given twice"):
        space.check_enqueued(numeric(tmp_path, enqueue=[{"batch_size": 32, "batch_size_log2": 5}]))


def test_a_trial_asked_from_the_printed_space_runs_under_the_numeric_encoding(tmp_path):
    """`optuna ask --search-space "$(searcher space ...)"` then `searcher run-trial`: suggest reads what was asked."""
    c = numeric(tmp_path, student={"layers": [2, 4], "hidden": [128, 256], "init": "random"})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    asked = optuna.distributions.json_to_distribution
    trial = study.ask({k: asked(json.dumps(v)) for k, v in json.loads(space.search_space_json(c)).items()})
    before = dict(trial.params)
    plan = space.suggest(trial, c)
    assert trial.params == before
    assert plan.hyperparams.batch_size == 2 ** before["batch_size_log2"] and plan.student.hidden == before["hidden"]
