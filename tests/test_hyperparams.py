"""The hyperparameter registry: one declaration reaches the study file's checks, the search space, the plan, the card
and the leaderboard."""

import dataclasses
import math

import optuna
import pytest

from searcher import hyperparams
from searcher.search import space
from searcher.config import SearchSection, parse_study
from searcher.errors import ConfigError
from searcher.hyperparams import Choices, Fixed, FloatRange, IntRange, REGISTRY

BASE = {"study": {"name": "s"}, "data": {"train": "t.csv", "validation": "v.csv"}, "teacher": {"model": "m"},
        "student": {"layers": [2], "hidden": [128], "init": "random"}}


def config(tmp_path, **search):
    return parse_study({**BASE, "search": search}, tmp_path / "s.toml")


def test_every_entry_is_a_search_key_a_plan_field_and_a_space_dimension(tmp_path):
    from searcher.losses import LOSSES

    c = parse_study({**BASE, "distill": {"losses": list(LOSSES)}}, tmp_path / "s.toml")  # every loss: every entry
    plan_fields = {f.name for f in dataclasses.fields(hyperparams.Hyperparams)}
    for h in REGISTRY:
        assert h.name in {f.name for f in dataclasses.fields(SearchSection)}
        assert h.name in plan_fields
        assert h.name in space.dimensions(c)
        lo, hi = hyperparams.extent(h.default)
        assert h.admits(lo) and h.admits(hi), f"{h.name}'s default lies outside its own bounds"
    assert plan_fields == {h.name for h in REGISTRY} | {"seed"}
    assert {f.name for f in dataclasses.fields(space.plan_from_values(c, {
        n: d.value if isinstance(d, Fixed) else hyperparams.extent(d)[0]
        for n, d in space.dimensions(c).items()}).hyperparams)} == plan_fields


def test_defaults_fix_or_search_as_declared(tmp_path):
    c = config(tmp_path)
    assert c.search.learning_rate == FloatRange(1e-5, 1e-3, True)
    assert c.search.batch_size == Choices((16, 32, 64, 128))
    assert c.search.max_grad_norm == Fixed(1.0) and c.search.hidden_dropout == Fixed(0.1)
    assert space.searched_names(c) == ("learning_rate", "batch_size", "temperature", "alpha")


@pytest.mark.parametrize("key, value, message", [
    ("max_grad_norm", -1.0, "[search] max_grad_norm must lie in [0, inf) (gradient clipping norm"),
    ("hidden_dropout", [0.0, 1.0], "[search] hidden_dropout must lie in [0, 1)"),
    ("learning_rate", 1.0, "[search] learning_rate must lie in (0, 1)"),
    ("batch_size", [16, 2048], "[search] batch_size must lie in [1, 1024]"),
    ("epochs", 0, "[search] epochs must lie in [1, 1000]"),
    ("alpha", math.nan, "[search] alpha must be a finite number"),
    ("temperature", [1.0, math.inf], "[search] temperature must be a finite number"),
])
def test_bounds_come_from_the_registry(tmp_path, key, value, message):
    with pytest.raises(ConfigError) as e:
        config(tmp_path, **{key: value})
    assert message in str(e.value)


def test_list_means_range_or_choices_as_declared(tmp_path):
    c = config(tmp_path, max_grad_norm=[0.5, 2.0], epochs=[2, 4], batch_size=[32, 8])
    assert c.search.max_grad_norm == FloatRange(0.5, 2.0)
    assert c.search.epochs == IntRange(2, 4)
    assert c.search.batch_size == Choices((32, 8))


def test_new_hyperparameters_are_searched_and_reach_the_plan(tmp_path):
    c = config(tmp_path, max_grad_norm=[0.1, 5.0], hidden_dropout=[0.0, 0.3])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    plan = space.suggest(trial, c)
    assert 0.1 <= plan.hyperparams.max_grad_norm <= 5.0 == trial.distributions["max_grad_norm"].high
    assert 0.0 <= plan.hyperparams.hidden_dropout <= 0.3
    assert set(trial.params) >= {"max_grad_norm", "hidden_dropout"}


def test_card_lines_follow_the_registry():
    values = {h.name: hyperparams.extent(h.default)[0] for h in REGISTRY}
    values.update(learning_rate=0.00021185586235152412, epochs=8, hidden_dropout=0.2)
    assert hyperparams.card_lines(values, "lead") == [("learning_rate", "0.00021185586235152412")]
    # defaults (weight decay 0, warmup 0, clipping 1.0) are not printed; a changed dropout is
    assert hyperparams.card_lines(values, "tail") == [("hidden_dropout_prob", "0.2")]
    assert hyperparams.card_lines(values, "end") == [("num_epochs", "8")]
    assert [n for n, _ in hyperparams.card_lines(values, "distillation")] == ["alpha", "temperature"]


def test_leaderboard_columns_show_searched_entries_without_a_column():
    names = [h.name for h in hyperparams.columns(("max_grad_norm",))]
    assert names == ["learning_rate", "batch_size", "temperature", "alpha", "epochs", "max_grad_norm"]
    h = hyperparams.BY_NAME["learning_rate"]
    assert hyperparams.cell(h, 0.000123) == "1.23e-04" and hyperparams.cell(h, None) == "-"


def test_contains_checks_values_against_a_dimension():
    assert hyperparams.contains(IntRange(2, 10, step=2), 4) and not hyperparams.contains(IntRange(2, 10, step=2), 5)
    assert hyperparams.contains(FloatRange(0.0, 1.0), 1.0) and not hyperparams.contains(FloatRange(0.0, 1.0), 1.5)
    assert not hyperparams.contains(FloatRange(0.0, 1.0), math.nan) and not hyperparams.contains(Choices((1, 2)), 3)
