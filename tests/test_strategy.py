"""Samplers, pruners and the stop rule, on in-memory studies driven with ask/report/tell (as Optuna's own tests do)."""

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState

from searcher.search import strategy

SPACE = {"x": FloatDistribution(0.0, 1.0), "n": IntDistribution(4, 7)}


def objective(params: dict) -> float:
    return -(params["x"] - 0.3) ** 2 - 0.01 * (params["n"] - 6) ** 2


def run(study: optuna.Study, n: int) -> None:
    for _ in range(n):
        trial = study.ask(SPACE)
        study.tell(trial, objective(trial.params))


@pytest.mark.parametrize("settings, name, shown, directions", [
    ({"type": "tpe", "n_startup_trials": 3}, "TPESampler", "n_startup_trials=3", ["maximize"]),
    ({"type": "gp", "n_startup_trials": 3}, "GPSampler", "GPSampler(n_startup_trials=3)", ["maximize"]),
    ({"type": "random"}, "RandomSampler", "RandomSampler()", ["maximize"]),
    ({"type": "cmaes", "n_startup_trials": 2, "popsize": 4}, "CmaEsSampler", "with_margin=True", ["maximize"]),
    ({"type": "nsga2", "population_size": 4}, "NSGAIISampler", "NSGAIISampler(population_size=4)",
     ["maximize", "minimize"]),
])
def test_each_sampler_is_built_and_described_from_one_spec_and_seeded_per_trial(settings, name, shown, directions):
    text = strategy.sampler_text(settings, 5)
    assert text.startswith(name + "(") and shown in text and text.endswith("seeded per trial from the study seed 5")
    built = strategy.sampler(settings, 5)
    assert type(built._inner).__name__ == name

    def first_params(sampler):
        study = optuna.create_study(directions=directions, sampler=sampler)
        return study.ask(SPACE).params

    assert first_params(strategy.sampler(settings, 5)) == first_params(strategy.sampler(settings, 5))  # reproducible
    assert first_params(strategy.sampler(settings, 5)) != first_params(strategy.sampler(settings, 6))
    # two workers sharing one study, each with a freshly built sampler, draw different trials
    study = optuna.create_study(directions=directions)
    drawn = []
    for _ in range(2):
        study.sampler = strategy.sampler(settings, 5)
        drawn.append(study.ask(SPACE).params)
    assert drawn[0] != drawn[1]
    # and it samples past its start-up trials (the model-based part runs on this space)
    study = optuna.create_study(directions=directions, sampler=strategy.sampler(settings, 5))
    for _ in range(8):
        trial = study.ask(SPACE)
        value = objective(trial.params)
        study.tell(trial, value if len(directions) == 1 else (value, trial.params["n"]))
    assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) == 8


def test_the_study_files_options_override_searchers_defaults():
    assert strategy.sampler_spec({"type": "tpe", "constant_liar": False, "n_ei_candidates": 48}) == (
        "TPESampler", {"multivariate": True, "group": True, "constant_liar": False, "n_ei_candidates": 48})
    assert strategy.sampler_spec("tpe") == strategy.sampler_spec({"type": "tpe", "popsize": None})
    assert strategy.sampler_spec({"type": "cmaes", "with_margin": False, "sigma0": 0.2}) == (
        "CmaEsSampler", {"with_margin": False, "sigma0": 0.2})


# ---------------------------------------------------------------------------------------------------------------
# Pruners: trials report once per epoch (step = epoch), and the pruner is asked after each report


GOOD = [[0.60, 0.70, 0.80, 0.85], [0.62, 0.72, 0.82, 0.86], [0.64, 0.74, 0.84, 0.87], [0.66, 0.76, 0.86, 0.88]]


def pruned_at(settings: dict, curve: list[float], epochs: int = 4) -> list[bool]:
    """Four good trials, then `curve`: whether the pruner says stop after each of its epochs. The study has a fixed
    name: Hyperband assigns trials to brackets by a hash of (study name, trial number)."""
    study = optuna.create_study(study_name="pruners", direction="maximize",
                                pruner=strategy.pruner(settings, epochs))
    for good in GOOD:
        trial = study.ask()
        for epoch, value in enumerate(good, start=1):
            trial.report(value, epoch)
            trial.should_prune()  # as the objective does: successive halving records its rungs here
        study.tell(trial, good[-1])
    trial = study.ask()
    said = []
    for epoch, value in enumerate(curve, start=1):
        trial.report(value, epoch)
        said.append(bool(trial.should_prune()))
    return said


@pytest.mark.parametrize("settings", [
    {"type": "median", "n_startup_trials": 1},
    {"type": "successive_halving", "reduction_factor": 2},
    {"type": "hyperband", "reduction_factor": 2},
    {"type": "patient", "patience": 0, "n_startup_trials": 1},
])
def test_each_pruner_stops_a_bad_trial_and_keeps_a_good_one(settings):
    assert any(pruned_at(settings, [0.30, 0.20, 0.15, 0.10]))
    assert not any(pruned_at(settings, [0.70, 0.80, 0.90, 0.95]))


def test_successive_halving_prunes_at_its_rungs_and_the_patient_pruner_waits_for_a_stalled_curve():
    assert pruned_at({"type": "successive_halving", "reduction_factor": 2}, [0.1, 0.1, 0.1, 0.1])[:2] == [True, True]
    # a rising curve below the median: the median pruner stops it at once, the patient one lets it rise
    rising = [0.30, 0.40, 0.50, 0.60]
    assert pruned_at({"type": "median", "n_startup_trials": 1}, rising)[0]
    assert not any(pruned_at({"type": "patient", "patience": 0, "n_startup_trials": 1}, rising))
    assert pruned_at({"type": "patient", "patience": 0, "n_startup_trials": 1}, [0.30, 0.25, 0.2, 0.1])[:2] == [
        False, True]


def test_no_pruner_never_prunes_and_pruners_are_described_from_their_spec():
    assert not any(pruned_at({"type": "none"}, [0.0, 0.0, 0.0, 0.0]))
    assert strategy.pruner_text({"type": "none"}, 3) == "none"
    assert strategy.pruner_text({"type": "hyperband", "reduction_factor": 2}, 4).startswith(
        "HyperbandPruner(min_resource=1, max_resource=4, reduction_factor=2)")
    text = strategy.pruner_text({"type": "patient", "patience": 1, "min_delta": 0.01, "n_startup_trials": 2}, 5)
    assert text.startswith("PatientPruner(wrapped_pruner=MedianPruner(n_startup_trials=2, n_warmup_steps=0, "
                           "interval_steps=1), patience=1, min_delta=0.01)")
    built = strategy.pruner({"type": "patient", "patience": 1}, 5)
    assert isinstance(built, optuna.pruners.PatientPruner)
    assert isinstance(built._wrapped_pruner, optuna.pruners.MedianPruner)
    # records of older studies hold only the original four pruner fields
    old = {"type": "median", "n_startup_trials": 5, "n_warmup_steps": 0, "reduction_factor": 3}
    assert strategy.pruner_text(old, 3).startswith("MedianPruner(n_startup_trials=5")


# ---------------------------------------------------------------------------------------------------------------
# Stopping early


def study_of(values: list, direction: str = "maximize") -> optuna.Study:
    """Finished trials in order; None is a pruned trial."""
    study = optuna.create_study(direction=direction)
    for v in values:
        trial = study.ask(SPACE)
        if v is None:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, v)
    return study



def test_a_study_files_sampler_and_pruner_are_built_here_and_its_storage_decides_neither(tmp_path):
    from searcher.records import storage
    from searcher.config import parse_study

    raw = {"study": {"name": "s", "seed": 3, "sampler": {"type": "random"},
                     "pruner": {"type": "median", "n_startup_trials": 2}, "warm_start": ["sqlite:////a.db::a"]},
           "data": {"train": "t.csv", "validation": "v.csv"}, "teacher": {"model": "m"},
           "student": {"layers": [2], "hidden": [128]}, "search": {"learning_rate": [1e-3, 1e-2], "epochs": [2, 5]}}
    config = parse_study(raw, tmp_path / "s.toml")
    sampler, pruner = strategy.sampler_for(config), strategy.pruner_for(config)
    assert type(sampler._inner).__name__ == "RandomSampler" and strategy.max_epochs(config) == 5
    attrs = strategy.strategy_attrs(config)  # a warm-started study's median pruner waits for its own trials
    assert "n_min_trials=2" in attrs[storage.ATTR_PRUNER] and "seed 3" in attrs[storage.ATTR_SAMPLER]
    study = storage.create_or_load(config, optuna.storages.InMemoryStorage(), sampler, pruner)
    assert study.sampler is sampler and study.pruner is pruner
    decisions = {"sampler", "pruner", "max_epochs", "strategy_attrs", "_pruner_settings", "strategy"}
    assert decisions & set(vars(storage)) == set()

def test_patience_stops_when_the_last_finished_trials_did_not_improve():
    stop = {"patience": 3, "min_delta": 0.0}
    assert strategy.stop_reason(study_of([0.5, 0.8, 0.7]), stop, "accuracy", 100) == ""  # too few trials
    reason = strategy.stop_reason(study_of([0.5, 0.8, 0.7, 0.79, None]), stop, "accuracy", 100)
    assert reason == "patience: the best accuracy (0.8000, trial 1) did not improve in the last 3 finished trials"
    assert strategy.stop_reason(study_of([0.5, 0.8, 0.7, 0.81, None]), stop, "accuracy", 100) == ""
    # min_delta: a gain smaller than it is no improvement
    small = {"patience": 3, "min_delta": 0.02}
    assert strategy.stop_reason(study_of([0.5, 0.8, 0.7, 0.81, None]), small, "accuracy", 100).startswith(
        "patience: the best accuracy (0.8000, trial 1) did not improve by 0.02 or more")
    assert strategy.stop_reason(study_of([0.5, 0.8, 0.7, 0.83, None]), small, "accuracy", 100) == ""
    # minimizing: lower is better
    assert strategy.stop_reason(study_of([5.0, 2.0, 3.0, 2.5, 2.1], "minimize"), stop, "latency_ms", 100) != ""
    assert strategy.stop_reason(study_of([5.0, 2.0, 3.0, 2.5, 1.9], "minimize"), stop, "latency_ms", 100) == ""
    assert strategy.stop_reason(study_of([0.5, 0.6, 0.6, 0.6, 0.6]), None, "accuracy", 100) == ""


def test_the_terminator_stops_a_study_that_has_nothing_left_to_gain():
    import random

    rng = random.Random(0)
    flat = optuna.create_study(direction="maximize")
    for _ in range(8):  # accuracy that does not depend on the parameters: 0.80 +- 0.005
        trial = flat.ask(SPACE)
        flat.tell(trial, 0.80 + rng.uniform(-0.005, 0.005))
    stop = {"terminator": True, "min_trials": 6, "min_delta": 0.0}
    reason = strategy.stop_reason(flat, stop, "accuracy", validation_rows=872)
    assert reason.startswith("terminator: Optuna's regret bound ") and "below the noise 0.01" in reason, reason
    assert "after 8 complete trials (best 0.80" in reason
    assert strategy.stop_reason(flat, {**stop, "min_trials": 9}, "accuracy", 872) == ""  # not enough trials yet
    # a steep objective with far too little explored: the bound is larger than a tiny noise
    steep = optuna.create_study(direction="maximize")
    for x in (0.0, 0.05, 0.1, 0.15, 0.2, 0.25):
        steep.enqueue_trial({"x": x, "n": 4})
        trial = steep.ask(SPACE)
        steep.tell(trial, 10 * trial.params["x"])
    assert strategy.stop_reason(steep, {"terminator": True, "min_trials": 6, "min_delta": 1e-6}, "accuracy", 872) == ""


def test_objective_noise_is_one_standard_error_of_a_proportion():
    assert strategy.objective_noise(0.8, 100) == pytest.approx(0.04)
    assert strategy.objective_noise(1.0, 100) == pytest.approx(0.001)  # never zero: a floor of p(1-p) = 1e-4
