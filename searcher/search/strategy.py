"""How a study searches: its sampler, its pruner and when it stops, built from the study file and described from the
same settings.

Each sampler and pruner is one (Optuna class, keyword arguments) pair: the object is built from it and the card and
dashboard note describe it from it, so what a card says is what ran. Samplers are seeded per trial from the study
seed (`TrialSeededSampler`), so N workers never draw the same start-up trials and one worker is reproducible.
The stop rule (`stop_reason`) is checked by every worker before it claims a trial (searcher.run.optimize).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, Callable, Optional, Union

import optuna
from optuna.trial import TrialState

from searcher.config import PRUNER_OPTIONS, SAMPLER_OPTIONS, PrunerConfig, StudyConfig
from searcher.hyperparams import extent
from searcher.records.storage import ATTR_PRUNER, ATTR_SAMPLER

Spec = tuple[str, dict]  # (Optuna class name, keyword arguments); a keyword's value may itself be a Spec


def _quiet(factory: Callable[..., Any], **kwargs):
    # several samplers, pruners and the terminator are marked experimental (or, for the terminator, deprecated for
    # Optuna 6); the warning would print in every worker
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return factory(**kwargs)


def describe(name: str, kwargs: dict) -> str:
    def show(v: Any) -> str:
        return describe(*v) if isinstance(v, tuple) and len(v) == 2 and isinstance(v[1], dict) else repr(v)

    return f"{name}({', '.join(f'{k}={show(v)}' for k, v in kwargs.items())})"


def build(spec: Spec, module) -> Any:
    name, kwargs = spec
    kwargs = {k: build(v, module) if isinstance(v, tuple) and len(v) == 2 and isinstance(v[1], dict) else v
              for k, v in kwargs.items()}
    return _quiet(getattr(module, name), **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# Samplers

# What searcher sets for each sampler type, before the study file's options (which win). Why:
# - TPE: multivariate models the joint space (batch size and learning rate interact); group=True because hidden is
#   only searched for students that are not teacher-initialised (a conditional space); constant_liar keeps parallel
#   workers from sampling next to each other's running trials.
# - CMA-ES: with_margin keeps integer parameters (layers, log2 batch size) from collapsing onto one value, the
#   mixed-integer variant its authors recommend for integer dimensions.
# - GP, random, NSGA-II: Optuna's defaults.
# GP and CMA-ES see the numeric encoding of the space (searcher.search.space.encoding): they model numbers, not categories.
SAMPLER_DEFAULTS: dict[str, Spec] = {
    "tpe": ("TPESampler", {"multivariate": True, "group": True, "constant_liar": True}),
    "gp": ("GPSampler", {}),
    "random": ("RandomSampler", {}),
    "cmaes": ("CmaEsSampler", {"with_margin": True}),
    "nsga2": ("NSGAIISampler", {}),
}


def sampler_spec(sampler: Union[str, dict]) -> Spec:
    """(Optuna class name, keyword arguments) of the study file's sampler (a type, or a dict of SamplerConfig's
    fields), without the seed."""
    settings = {"type": sampler} if isinstance(sampler, str) else sampler
    kind = settings.get("type", "tpe")
    name, defaults = SAMPLER_DEFAULTS[kind]
    options = {k: settings[k] for k in SAMPLER_OPTIONS[kind] if settings.get(k) is not None}
    return name, {**defaults, **options}


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """Optuna's sampler, seeded afresh for each trial from (study seed, trial number).

    One sampler seeded once per process would make every worker draw the same random start-up trials; seeding per
    trial keeps a one-worker study reproducible and gives N workers N different trials. It only delegates through
    the public BaseSampler interface, and holds no state between trials: TPE, GP, CMA-ES and NSGA-II read the
    history (and CMA-ES and NSGA-II their generations) from storage.
    """

    def __init__(self, factory: Callable[[int], optuna.samplers.BaseSampler], seed: int):
        self._factory = factory
        self._seed = seed
        self._inner = factory(seed)

    def before_trial(self, study, trial) -> None:
        self._inner = self._factory((self._seed * 1_000_003 + trial.number) % 2 ** 31)
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()


def sampler(settings: Union[str, dict], seed: int) -> optuna.samplers.BaseSampler:
    name, kwargs = sampler_spec(settings)
    return TrialSeededSampler(lambda s: build((name, {**kwargs, "seed": s}), optuna.samplers), seed)


def sampler_text(settings: Union[str, dict], seed: int) -> str:
    return f"{describe(*sampler_spec(settings))}, seeded per trial from the study seed {seed}"


# ---------------------------------------------------------------------------------------------------------------
# Pruners
#
# Not offered: Optuna's WilcoxonPruner. It compares a trial's values with the best trial's, step by step, as paired
# samples of independent problem instances (folds, datasets) whose order does not matter, and expects the objective to
# be their mean. searcher's steps are epochs of one learning curve: later epochs are better by construction, the
# objective is the last epoch, and with 2-5 epochs the signed-rank test has too few pairs to reach its p-threshold.


def pruner_spec(pruner: dict, max_epochs: int) -> Spec:
    """(Optuna class name, keyword arguments) of the study file's pruner (a dict of PrunerConfig's fields; missing
    ones, in records of older studies, take their defaults). The resource is the epoch: trials report once per epoch."""
    p = {**dataclasses.asdict(PrunerConfig()), **pruner}
    kind = p["type"]
    assert kind in PRUNER_OPTIONS, kind
    # n_min_trials: set by a warm-started study (_pruner_settings below), whose copied trials carry no per-epoch values
    median = ("MedianPruner", {"n_startup_trials": p["n_startup_trials"], "n_warmup_steps": p["n_warmup_steps"],
                               "interval_steps": 1, **({"n_min_trials": p["n_min_trials"]} if "n_min_trials" in p
                                                       else {})})
    if kind == "none":
        return "NopPruner", {}
    if kind == "hyperband":
        return "HyperbandPruner", {"min_resource": 1, "max_resource": max(max_epochs, 1),
                                   "reduction_factor": p["reduction_factor"]}
    if kind == "successive_halving":
        return "SuccessiveHalvingPruner", {"min_resource": 1, "reduction_factor": p["reduction_factor"],
                                           "min_early_stopping_rate": p["min_early_stopping_rate"]}
    if kind == "patient":
        return "PatientPruner", {"wrapped_pruner": median, "patience": p["patience"], "min_delta": p["min_delta"]}
    return median


def pruner(pruner_config: dict, max_epochs: int) -> optuna.pruners.BasePruner:
    return build(pruner_spec(pruner_config, max_epochs), optuna.pruners)


def pruner_text(pruner_config: dict, max_epochs: int) -> str:
    name, kwargs = pruner_spec(pruner_config, max_epochs)
    if name == "NopPruner":
        return "none"
    return f"{describe(name, kwargs)}, resource = epochs (reported once per epoch)"


# ---------------------------------------------------------------------------------------------------------------
# A study file's sampler and pruner (what `searcher optimize` runs, and what its records say ran)


def sampler_for(config: StudyConfig) -> optuna.samplers.BaseSampler:
    return sampler(dataclasses.asdict(config.study.sampler), config.study.seed)


def max_epochs(config: StudyConfig) -> int:
    return int(extent(config.search.epochs)[1])


def _pruner_settings(config: StudyConfig) -> dict:
    settings = dataclasses.asdict(config.study.pruner)
    if config.study.warm_start:
        # warm-start copies are COMPLETE trials, so they would satisfy the median pruner's start-up count; they have
        # no per-epoch values, so it would then prune against this study's first complete trial alone
        settings["n_min_trials"] = settings["n_startup_trials"]
    return settings


def pruner_for(config: StudyConfig) -> optuna.pruners.BasePruner:
    return pruner(_pruner_settings(config), max_epochs(config))


def strategy_attrs(config: StudyConfig) -> dict:
    """The sampler and pruner as they run, described from the settings that build them (for cards and notes)."""
    return {ATTR_SAMPLER: sampler_text(dataclasses.asdict(config.study.sampler), config.study.seed),
            ATTR_PRUNER: pruner_text(_pruner_settings(config), max_epochs(config))}


# ---------------------------------------------------------------------------------------------------------------
# Stopping early


def objective_noise(best: float, validation_rows: int) -> float:
    """One standard error of a proportion (accuracy, F1, ...) measured on `validation_rows` examples."""
    p = min(max(best, 0.0), 1.0)
    return math.sqrt(max(p * (1 - p), 1e-4) / max(validation_rows, 1))


def stop_reason(study: optuna.Study, stop: Optional[dict], objective: str, validation_rows: int,
                seed: int = 0) -> str:
    """Why the study should end now ("" to go on), from the study file's stop settings (StopConfig's fields).
    Single-objective studies only (the config refuses stop for several objectives)."""
    if not stop or len(study.directions) > 1:
        return ""
    trials = study.get_trials(deepcopy=False)
    if stop.get("patience"):
        reason = _patience_reason(trials, study.direction, stop["patience"], stop.get("min_delta", 0.0), objective)
        if reason:
            return reason
    if stop.get("terminator"):
        return _terminator_reason(study, trials, stop, objective, validation_rows, seed)
    return ""


def _better(direction) -> Callable[[float, float], float]:
    """improvement(new, old): positive when `new` is better."""
    sign = 1.0 if direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
    return lambda new, old: sign * (new - old)


def _patience_reason(trials, direction, patience: int, min_delta: float, objective: str) -> str:
    """No improvement of min_delta or more over the last `patience` finished trials (complete or pruned: a pruned
    trial is compute spent without a better result)."""
    finished = sorted((t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)),
                      key=lambda t: (t.datetime_complete is None, t.datetime_complete, t.number))
    if len(finished) <= patience:
        return ""
    before = [t for t in finished[:-patience] if t.state == TrialState.COMPLETE]
    if not before:
        return ""
    improvement = _better(direction)
    best_before = before[0]
    for t in before[1:]:
        if improvement(t.value, best_before.value) > 0:
            best_before = t
    window = [t for t in finished[-patience:] if t.state == TrialState.COMPLETE]
    gains = [improvement(t.value, best_before.value) for t in window]
    if any(g >= min_delta if min_delta > 0 else g > 0 for g in gains):
        return ""
    by = f" by {min_delta:g} or more" if min_delta > 0 else ""
    return (f"patience: the best {objective} ({best_before.value:.4f}, trial {best_before.number}) did not improve"
            f"{by} in the last {patience} finished trials")


def _terminator_reason(study, trials, stop: dict, objective: str, validation_rows: int, seed: int) -> str:
    """Optuna's Terminator (Makarova et al., 2022): stop when the regret bound of a GP fitted to the complete trials
    falls below the objective's noise (min_delta, or one standard error of the best value on the validation split)."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    min_trials = stop.get("min_trials", 20)
    if len(complete) < min_trials:
        return ""
    with warnings.catch_warnings():  # optuna.terminator is deprecated for Optuna 6 and warns when imported
        warnings.simplefilter("ignore")
        from optuna import terminator as optuna_terminator

    class RecordedRegretBound(optuna_terminator.RegretBoundEvaluator):
        """Optuna's regret bound, remembered so the reason line can say it (the terminator computes it once)."""

        last: Optional[float] = None

        def evaluate(self, trials, study_direction) -> float:
            self.last = super().evaluate(trials, study_direction)
            return self.last

    best = study.best_value
    noise = stop.get("min_delta") or objective_noise(best, validation_rows)
    bound = _quiet(RecordedRegretBound, min_n_trials=min_trials, seed=seed)
    error = _quiet(optuna_terminator.StaticErrorEvaluator, constant=noise)
    terminator = _quiet(optuna_terminator.Terminator, improvement_evaluator=bound, error_evaluator=error,
                        min_n_trials=min_trials)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if not terminator.should_terminate(study):
                return ""
    except ValueError:  # Optuna's: no parameter common to all complete trials, so no GP can be fitted
        return ""
    return (f"terminator: Optuna's regret bound {bound.last:.4g} is below the noise {noise:.4g} of {objective} "
            f"after {len(complete)} complete trials (best {best:.4f})")
