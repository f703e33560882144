"""The search space: the only module that calls `trial.suggest_*`.

It turns the study file's [search] and [student] sections into Optuna distributions, and a trial into a plain
frozen `Plan` (hyperparameters + which student) that the training loop consumes without knowing Optuna.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import optuna
from optuna.distributions import (BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution,
                                  distribution_to_json)

from searcher.config import Choices, Dimension, FloatRange, Fixed, IntRange, StudyConfig
from searcher.distill import Hyperparams
from searcher.errors import ConfigError
from searcher.student import StudentSpec, spec_for

HYPERPARAMS = ("learning_rate", "batch_size", "temperature", "alpha", "epochs", "weight_decay", "warmup_ratio")


@dataclass(frozen=True)
class Plan:
    hyperparams: Hyperparams
    student: StudentSpec


def _distribution(dim: Dimension) -> BaseDistribution | None:
    if isinstance(dim, Fixed):
        return None
    if isinstance(dim, FloatRange):
        return FloatDistribution(dim.low, dim.high, log=dim.log)
    if isinstance(dim, IntRange):
        return IntDistribution(dim.low, dim.high, log=dim.log, step=dim.step)
    if isinstance(dim, Choices):
        return CategoricalDistribution(list(dim.values))
    raise TypeError(dim)


def _choice(values) -> Dimension:
    values = tuple(values)
    return Choices(values) if len(values) > 1 else Fixed(values[0] if values else None)


def _student_dims(config: StudyConfig) -> dict[str, Dimension]:
    """layers/hidden of the miniature grid (and init when several are searched), or a checkpoint list.
    A teacher-initialised student has the teacher's hidden size, so hidden is only searched for the others."""
    st = config.student
    if st.checkpoints is not None:
        return {"checkpoint": _choice(st.checkpoints)}
    dims = {"init": _choice(st.init), "layers": _choice(st.layers)}
    dims["hidden"] = _choice(st.hidden or ())
    return dims


def _wants_hidden(values: dict) -> bool:
    return values.get("init") != "teacher"


def dimensions(config: StudyConfig) -> dict[str, Dimension]:
    """Every value a trial needs, searched or fixed, by parameter name."""
    dims = {name: getattr(config.search, name) for name in HYPERPARAMS}
    dims.update(_student_dims(config))
    return dims


def distributions(config: StudyConfig) -> dict[str, BaseDistribution]:
    """The searched parameters only, as Optuna distributions."""
    return {name: d for name, dim in dimensions(config).items() if (d := _distribution(dim)) is not None}


def search_space_json(config: StudyConfig) -> str:
    """The space in the JSON form that `optuna ask --search-space` takes."""
    return json.dumps({name: json.loads(distribution_to_json(d)) for name, d in distributions(config).items()})


def _suggest(trial: optuna.Trial, name: str, dim: Dimension):
    if isinstance(dim, Fixed):
        return dim.value
    if isinstance(dim, FloatRange):
        return trial.suggest_float(name, dim.low, dim.high, log=dim.log)
    if isinstance(dim, IntRange):
        return trial.suggest_int(name, dim.low, dim.high, log=dim.log, step=dim.step)
    return trial.suggest_categorical(name, list(dim.values))


def suggest(trial: optuna.Trial, config: StudyConfig) -> Plan:
    values = {}
    for name, dim in dimensions(config).items():
        if name == "hidden" and not _wants_hidden(values):
            continue  # a conditional parameter: Optuna's TPE (group=True) handles the two sub-spaces
        values[name] = _suggest(trial, name, dim)
    return plan_from_values(config, values)


def plan_from_values(config: StudyConfig, values: dict) -> Plan:
    hp = Hyperparams(
        learning_rate=float(values["learning_rate"]),
        batch_size=int(values["batch_size"]),
        temperature=float(values["temperature"]),
        alpha=float(values["alpha"]),
        epochs=int(values["epochs"]),
        weight_decay=float(values["weight_decay"]),
        warmup_ratio=float(values["warmup_ratio"]),
        seed=config.study.seed,
    )
    student = spec_for(config, layers=values.get("layers"), hidden=values.get("hidden"),
                       checkpoint=values.get("checkpoint"), init=values.get("init"))
    return Plan(hp, student)


def check_enqueued(config: StudyConfig) -> list[dict]:
    """[[enqueue]] entries as Optuna params: each value must be inside its range (fixed values must match)."""
    dims = dimensions(config)
    dists = distributions(config)
    out = []
    for i, entry in enumerate(config.enqueue):
        params = {}
        for name, value in entry.items():
            if name not in dims:
                raise ConfigError(f"{config.path}: [[enqueue]] #{i + 1}: unknown parameter {name!r}; "
                                  f"parameters are {', '.join(dims)}")
            dim = dims[name]
            if isinstance(dim, Fixed):
                if value != dim.value:
                    raise ConfigError(f"{config.path}: [[enqueue]] #{i + 1}: {name} = {value!r} but the study fixes "
                                      f"it to {dim.value!r}; make it a range in [search] or drop it here")
                continue
            dist = dists[name]
            internal = None
            try:
                internal = dist.to_internal_repr(value)
            except (ValueError, TypeError):
                pass
            if internal is None or not dist._contains(internal):
                raise ConfigError(f"{config.path}: [[enqueue]] #{i + 1}: {name} = {value!r} is outside the searched "
                                  f"range {_describe(dim)}; widen the range or change the value")
            params[name] = value
        out.append(params)
    return out


def _describe(dim: Dimension) -> str:
    if isinstance(dim, Choices):
        return str(list(dim.values))
    if isinstance(dim, (FloatRange, IntRange)):
        return f"[{dim.low}, {dim.high}]" + (" (log)" if dim.log else "")
    return repr(dim.value)


def describe_ranges(config: StudyConfig) -> dict[str, str]:
    """Human-readable searched ranges and fixed values, for records and cards."""
    return {name: _describe(dim) for name, dim in dimensions(config).items() if not
            (isinstance(dim, Fixed) and dim.value is None)}
