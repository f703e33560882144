"""The search space: the only module that calls `trial.suggest_*`.

It turns the study file's [search] section (one dimension per hyperparameter of searcher.hyperparams) and its
[student] section into Optuna distributions, and a trial into a plain frozen `Plan` (hyperparameters + which
student) that the training loop consumes without knowing Optuna.

Two encodings of the same space (`encoding`): TPE and random search ask a list of values (layers, hidden, batch
sizes) as a category; GP and CMA-ES model numbers and learn nothing from a category's label, so for them a list of
integers is asked as an integer range that holds exactly the listed values: `layers = [2, 4, 6]` as 2..6 step 2,
`batch_size = [16, 32, 64]` as `batch_size_log2` 4..6 (hyperparams.LOG2), `hidden = [128, 256, 512]` as
`hidden_log2` 7..9. A list that is neither evenly spaced nor evenly doubling stays a category, and so do init and
checkpoints. The plan is the same whatever the encoding; [[enqueue]] and cards keep the study file's names.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

import optuna
from optuna.distributions import (BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution,
                                  distribution_to_json)

from searcher import hyperparams, records
from searcher.config import StudyConfig, teacher_members
from searcher.errors import ConfigError
from searcher.hyperparams import Choices, Dimension, FloatRange, Fixed, Hyperparams, IntRange
from searcher.train.student import StudentSpec, spec_for


@dataclass(frozen=True)
class Plan:
    hyperparams: Hyperparams
    student: StudentSpec
    teacher_weights: tuple[float, ...] = ()  # searched ensemble weights, normalised, in teacher order (or none)


def teacher_weight_names(config: StudyConfig) -> tuple[str, ...]:
    """The parameters of searched ensemble weights, in teacher order (none unless [teacher] search_weights)."""
    if config.teacher.search_weights is None:
        return ()
    return tuple(hyperparams.TEACHER_WEIGHT + m.name for m in teacher_members(config))


NUMERIC_SAMPLERS = ("gp", "cmaes")  # samplers that see the numeric encoding
LOG2_FIRST = ("batch_size",)  # batch sizes double: their natural numeric form is the exponent


def encoding(config: StudyConfig) -> Literal["categorical", "numeric"]:
    return "numeric" if config.study.sampler.type in NUMERIC_SAMPLERS else "categorical"


@dataclass(frozen=True)
class Param:
    """How one searched value is asked of Optuna: the parameter's name, what Optuna samples, and the scale that
    turns Optuna's value into the plan's (`value`: itself; `log2`: 2 ** exponent)."""

    name: str
    dim: Dimension
    scale: Literal["value", "log2"] = "value"

    def to_value(self, x: Any) -> Any:
        return 2 ** int(x) if self.scale == "log2" else x

    def to_param(self, value: Any) -> Any:
        return int(value).bit_length() - 1 if self.scale == "log2" else value


def _evenly_spaced(values: list[int]) -> int | None:
    steps = {b - a for a, b in zip(values, values[1:])}
    return steps.pop() if len(steps) == 1 else None


def _numeric(name: str, dim: Dimension) -> Param:
    """A list of integers as an integer range with exactly those values (see the module docstring)."""
    if not isinstance(dim, Choices) or not all(isinstance(v, int) and not isinstance(v, bool) for v in dim.values):
        return Param(name, dim)
    values = sorted(dim.values)
    linear = _evenly_spaced(values)
    exponents = [v.bit_length() - 1 for v in values] if all(v > 0 and v & (v - 1) == 0 for v in values) else None
    doubling = _evenly_spaced(exponents) if exponents else None
    as_range = Param(name, IntRange(values[0], values[-1], step=linear)) if linear else None
    as_log2 = Param(name + hyperparams.LOG2, IntRange(exponents[0], exponents[-1], step=doubling), "log2") \
        if doubling else None
    order = (as_log2, as_range) if name in LOG2_FIRST else (as_range, as_log2)
    return next((p for p in order if p is not None), Param(name, dim))


def parameters(config: StudyConfig) -> dict[str, Param]:
    """The searched values by their study-file name, each as the Optuna parameter this study's encoding asks."""
    numeric = encoding(config) == "numeric"
    return {name: _numeric(name, dim) if numeric else Param(name, dim)
            for name, dim in dimensions(config).items() if not isinstance(dim, Fixed)}


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


BERT_DIMS = ("checkpoint", "init", "layers", "hidden")
STATIC_DIMS = ("static_dim", "static_train_embeddings", "static_head")


def _student_dims(config: StudyConfig) -> dict[str, Dimension]:
    """The family (when several are searched), then each family's own dimensions. bert: layers/hidden of the
    miniature grid (and init when several are searched), or a checkpoint list; a teacher-initialised student has
    the teacher's hidden size, so hidden is only searched for the others. static: the table's dimension, whether
    it trains, the head."""
    st = config.student
    dims: dict[str, Dimension] = {"family": _choice(st.family)}
    if st.bert and st.checkpoints is not None:
        dims["checkpoint"] = _choice(st.checkpoints)
    elif st.bert:
        dims.update(init=_choice(st.init), layers=_choice(st.layers), hidden=_choice(st.hidden or ()))
    if "static" in st.family:
        dims.update(static_dim=_choice(st.static_dim), static_train_embeddings=_choice(st.static_train_embeddings),
                    static_head=_choice(st.static_head))
    return dims


def _wants_hidden(values: dict) -> bool:
    return values.get("init") != "teacher"


def applies(name: str, values: dict) -> bool:
    """Whether parameter `name` belongs to the trial whose earlier values are `values`: conditional parameters are
    asked only of the family (and init) they describe, so TPE, GP and the Pareto front see each sub-space right."""
    family = values.get("family", "bert")
    if name in BERT_DIMS and family != "bert":
        return False
    if name in STATIC_DIMS and family != "static":
        return False
    return name != "hidden" or _wants_hidden(values)


def dimensions(config: StudyConfig) -> dict[str, Dimension]:
    """Every value a trial needs, searched or fixed, by parameter name."""
    dims = {h.name: getattr(config.search, h.name) for h in hyperparams.in_use(config.distill.losses)}
    dims.update(_student_dims(config))
    for name in teacher_weight_names(config):
        dims[name] = FloatRange(*config.teacher.search_weights, log=True)
    return dims


def searched_names(config: StudyConfig) -> tuple[str, ...]:
    """The hyperparameters this study searches (not fixed)."""
    return tuple(h.name for h in hyperparams.in_use(config.distill.losses)
                 if not isinstance(getattr(config.search, h.name), Fixed))


def distributions(config: StudyConfig) -> dict[str, BaseDistribution]:
    """The searched parameters only, as Optuna distributions under their Optuna names (this study's encoding)."""
    return {p.name: _distribution(p.dim) for p in parameters(config).values()}


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
    params = parameters(config)
    for name, dim in dimensions(config).items():
        if not applies(name, values):
            continue  # a conditional parameter: Optuna's TPE (group=True) handles the sub-spaces
        if isinstance(dim, Fixed):
            values[name] = dim.value
        else:
            p = params[name]
            values[name] = p.to_value(_suggest(trial, p.name, p.dim))
    return plan_from_values(config, values)


def plan_from_values(config: StudyConfig, values: dict) -> Plan:
    hp = hyperparams.from_values(values, seed=config.study.seed, loss_names=config.distill.losses)
    student = spec_for(config, layers=values.get("layers"), hidden=values.get("hidden"),
                       checkpoint=values.get("checkpoint"), init=values.get("init"), family=values.get("family"),
                       **{name: values.get(name) for name in STATIC_DIMS})
    raw = [float(values[name]) for name in teacher_weight_names(config)]
    return Plan(hp, student, tuple(w / sum(raw) for w in raw))


# Keys an [[enqueue]] entry may carry besides parameters (`searcher import` writes them). They are not parameters:
# `_source` (where the values came from: a URL, a file, STORAGE_URL::NAME) becomes the trial's user attr
# enqueued_from, and `_published` (what that source reported: a list of {dataset, config, split, metrics = {name =
# value}}) its user attr source_published, from which the card shows the published figure beside the student's.
SOURCE_KEY = "_source"
PUBLISHED_KEY = "_published"
PUBLISHED_FIELDS = ("dataset", "config", "split", "metrics")


def check_enqueued(config: StudyConfig) -> list[dict]:
    """[[enqueue]] entries as Optuna params of this study's encoding: each value must be inside its range (fixed
    values must match)."""
    return [params for params, _ in enqueued(config)]


def enqueued(config: StudyConfig) -> list[tuple[dict, dict]]:
    """(Optuna params, trial user attrs) per [[enqueue]] entry. Entries use the study file's names
    (batch_size = 1024); the numeric encoding's names (batch_size_log2 = 10, as a GP study's trials store them) are
    accepted too. `_source` and `_published` are checked and become user attrs; every other key must be a
    parameter whose value fits the space."""
    dims = dimensions(config)
    params = parameters(config)
    out = []
    for i, entry in enumerate(config.enqueue):
        where = f"{config.path}: [[enqueue]] #{i + 1}"
        attrs = {}
        if SOURCE_KEY in entry:
            value = entry[SOURCE_KEY]
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{where}: {SOURCE_KEY} must be a non-empty string (where the values came "
                                  f"from), got {value!r}")
            attrs[records.ENQUEUED_FROM] = value
        if PUBLISHED_KEY in entry:
            attrs[records.SOURCE_PUBLISHED] = _published(entry[PUBLISHED_KEY], where)
            if records.ENQUEUED_FROM not in attrs:
                raise ConfigError(f"{where}: {PUBLISHED_KEY} needs {SOURCE_KEY} (who published those results)")
        entry = {k: v for k, v in entry.items() if k not in (SOURCE_KEY, PUBLISHED_KEY)}
        encoded = {k for k in entry if k.endswith(hyperparams.LOG2) and k[:-len(hyperparams.LOG2)] in dims}
        values = {k: v for k, v in entry.items() if k not in encoded}
        for key, value in hyperparams.user_params({k: entry[k] for k in encoded}).items():
            if key in values:
                raise ConfigError(f"{where}: {key} is given twice (as {key} and {key}{hyperparams.LOG2}); keep one")
            values[key] = value
        out_params = {}
        for name, value in values.items():
            if name not in dims:
                raise ConfigError(f"{where}: unknown parameter {name!r}; parameters are {', '.join(dims)} (and "
                                  f"{SOURCE_KEY}, {PUBLISHED_KEY})")
            dim = dims[name]
            if isinstance(dim, Fixed):
                if value != dim.value:
                    raise ConfigError(f"{where}: {name} = {value!r} but the study fixes it to {dim.value!r}; make it a "
                                      f"range in [search] or drop it here")
                continue
            if not hyperparams.contains(dim, value):
                raise ConfigError(f"{where}: {name} = {value!r} is outside the searched range "
                                  f"{hyperparams.describe(dim)}; widen the range or change the value")
            p = params[name]
            out_params[p.name] = p.to_param(value)
        out.append((out_params, attrs))
    return out


def _published(value, where: str) -> list[dict]:
    example = (f'e.g. {PUBLISHED_KEY} = [{{dataset = "glue", config = "sst2", split = "validation", metrics = '
               f'{{accuracy = 0.8567}}}}]')
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{where}: {PUBLISHED_KEY} must be a list of tables, {example}")
    out = []
    for item in value:
        unknown = sorted(set(item) - set(PUBLISHED_FIELDS))
        if unknown:
            raise ConfigError(f"{where}: {PUBLISHED_KEY} has unknown key {unknown[0]!r}; its tables take "
                              f"{', '.join(PUBLISHED_FIELDS)}")
        for key in ("dataset", "config", "split"):
            if key in item and not isinstance(item[key], str):
                raise ConfigError(f"{where}: {PUBLISHED_KEY} {key} must be a string, got {item[key]!r}")
        metrics = item.get("metrics")
        if not isinstance(metrics, dict) or not metrics or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in metrics.values()):
            raise ConfigError(f"{where}: {PUBLISHED_KEY} metrics must be a table of finite numbers, {example}")
        out.append({**{k: item[k] for k in ("dataset", "config", "split") if k in item},
                    "metrics": {str(k): float(v) for k, v in metrics.items()}})
    return out


def describe_ranges(config: StudyConfig) -> dict[str, str]:
    """Human-readable searched ranges and fixed values, for records and cards."""
    return {name: hyperparams.describe(dim) for name, dim in dimensions(config).items() if not
            (isinstance(dim, Fixed) and dim.value is None)}
