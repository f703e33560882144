"""The study file: frozen, validated configuration read once from TOML.

One frozen dataclass per section. `load_study(path)` checks every key and type up front and raises `ConfigError`
with the file, the key and the fix, so nothing downstream ever sees a half-valid config.
This module must not import torch, transformers or optuna: `searcher --help` and config errors stay instant.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

from searcher.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

STORAGE_ENV = "SEARCHER_STORAGE"
CACHE_ENV = "SEARCHER_CACHE"
EXPORT_FORMATS = ("onnx", "onnx-int8")  # onnx/model.onnx (fp32) and onnx/model_quantized.onnx (dynamic int8)
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")  # a study name is a path segment: never "." or ".."


from searcher import hyperparams, metrics, redact
from searcher.hyperparams import (MAX_BATCH_SIZE, Choices, Dimension, Fixed, FloatRange, IntRange,  # noqa: F401
                                  extent as dimension_values)

def _number(value: Any) -> bool:
    """A finite int or float: NaN and inf are never a sensible setting (TOML allows them)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _dimension(value: Any, where: str, *, integer: bool, log: bool, list_means: str) -> Dimension:
    """Parse a search value: a number (fixed), a [low, high] range or a list of choices, or a {low, high} table."""
    kind = "an integer" if integer else "a finite number"
    ok = (lambda v: isinstance(v, int) and not isinstance(v, bool)) if integer else _number
    if ok(value):
        return Fixed(int(value) if integer else float(value))
    if isinstance(value, list):
        if not value or not all(ok(v) for v in value):
            raise ConfigError(f"{where} must be {kind} or a list of them, got {value!r}")
        if list_means == "range" and len(value) == 1:
            return Fixed(int(value[0]) if integer else float(value[0]))
        if list_means == "range":
            if len(value) != 2:
                raise ConfigError(f"{where} is a range and takes [low, high], got {len(value)} values: {value!r}")
            return _range(value[0], value[1], where, integer=integer, log=log)
        values = tuple(dict.fromkeys(int(v) if integer else float(v) for v in value))
        return Fixed(values[0]) if len(values) == 1 else Choices(values)
    if isinstance(value, dict):
        unknown = set(value) - {"low", "high", "log", "step"}
        if unknown or not {"low", "high"} <= set(value):
            raise ConfigError(f"{where} as a table takes keys low, high and optionally log, step; got {sorted(value)}")
        if not (ok(value["low"]) and ok(value["high"])):
            raise ConfigError(f"{where}: low and high must be {kind}s, got {value!r}")
        return _range(value["low"], value["high"], where, integer=integer, log=bool(value.get("log", log)),
                      step=value.get("step", 1))
    raise ConfigError(f"{where} must be {kind}, a [low, high] range or a list, got {value!r}")


def _range(low: Any, high: Any, where: str, *, integer: bool, log: bool, step: Any = 1) -> Dimension:
    if low > high:
        raise ConfigError(f"{where}: the range [{low}, {high}] is impossible (low > high); swap the two values")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0, got {low}")
    if low == high:
        return Fixed(int(low) if integer else float(low))
    if integer:
        if not isinstance(step, int) or step < 1:
            raise ConfigError(f"{where}: step must be a positive integer, got {step!r}")
        return IntRange(int(low), int(high), log, step)
    return FloatRange(float(low), float(high), log)


# ---------------------------------------------------------------------------------------------------------------
# Sections


# What each sampler and pruner type takes in the study file: Optuna's keyword arguments of the same names (see
# searcher.strategy, which builds each one and describes it from the same settings). An option of another type is an
# error, not silently ignored.
SAMPLER_OPTIONS: dict[str, tuple[str, ...]] = {
    "tpe": ("n_startup_trials", "n_ei_candidates", "multivariate", "group", "constant_liar"),
    "gp": ("n_startup_trials", "deterministic_objective"),
    "random": (),
    "cmaes": ("n_startup_trials", "sigma0", "popsize", "with_margin", "consider_pruned_trials"),
    "nsga2": ("population_size", "mutation_prob", "crossover_prob", "swapping_prob"),
}
PRUNER_OPTIONS: dict[str, tuple[str, ...]] = {
    "median": ("n_startup_trials", "n_warmup_steps"),
    "hyperband": ("reduction_factor",),
    "successive_halving": ("reduction_factor", "min_early_stopping_rate"),
    "patient": ("patience", "min_delta", "n_startup_trials", "n_warmup_steps"),  # patience around a median pruner
    "none": (),
}


@dataclass(frozen=True)
class SamplerConfig:
    """[study] sampler: a type, or a table with a type and its options (None: the default searcher.strategy sets)."""

    type: Literal["tpe", "gp", "random", "cmaes", "nsga2"] = "tpe"
    n_startup_trials: Optional[int] = None
    n_ei_candidates: Optional[int] = None
    multivariate: Optional[bool] = None
    group: Optional[bool] = None
    constant_liar: Optional[bool] = None
    deterministic_objective: Optional[bool] = None
    sigma0: Optional[float] = None
    popsize: Optional[int] = None
    with_margin: Optional[bool] = None
    consider_pruned_trials: Optional[bool] = None
    population_size: Optional[int] = None
    mutation_prob: Optional[float] = None
    crossover_prob: Optional[float] = None
    swapping_prob: Optional[float] = None

    @property
    def options(self) -> dict[str, Any]:
        """The options the study file set for this type."""
        return {k: getattr(self, k) for k in SAMPLER_OPTIONS[self.type] if getattr(self, k) is not None}


@dataclass(frozen=True)
class PrunerConfig:
    type: Literal["median", "hyperband", "successive_halving", "patient", "none"] = "median"
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    reduction_factor: int = 3
    min_early_stopping_rate: int = 0
    # patient: the median pruner is asked only once the trial's best of its last patience + 1 epochs is below (by
    # min_delta) its best before them: a trial whose accuracy is still rising is never stopped
    patience: int = 0
    min_delta: float = 0.0


@dataclass(frozen=True)
class StopConfig:
    """[study] stop: end the study before n_trials when it no longer improves (searcher.strategy.stop_reason).

    patience: stop when the best value has not improved by min_delta over the last `patience` finished (complete or
    pruned) trials. terminator: stop when Optuna's regret bound (a GP over the complete trials) says less than the
    noise is left to gain; the noise is min_delta, or else the standard error of the objective on the validation
    split (for accuracy-like objectives). min_trials: complete trials before the terminator is consulted."""

    patience: Optional[int] = None
    min_delta: float = 0.0
    terminator: bool = False
    min_trials: int = 20  # Optuna's Terminator default


@dataclass(frozen=True)
class StudySection:
    name: str
    storage: Optional[str] = None
    n_trials: Optional[int] = None
    timeout: Optional[float] = None
    seed: int = 0
    directions: tuple[str, ...] = ("maximize",)
    objectives: Optional[tuple[str, ...]] = None
    sampler: SamplerConfig = field(default_factory=SamplerConfig, metadata={"parse": "sampler"})
    pruner: Optional[PrunerConfig] = field(default=None, metadata={"parse": "pruner"})
    stop: Optional[StopConfig] = field(default=None, metadata={"parse": "stop"})
    keep_best: int = 3
    output_dir: Optional[Path] = field(default=None, metadata={"parse": "path"})
    cache_dir: Optional[Path] = field(default=None, metadata={"parse": "path"})
    heartbeat_interval: int = 60
    grace_period: Optional[int] = None
    max_retry: int = 3
    warm_start: tuple[str, ...] = ()  # "STORAGE_URL::STUDY_NAME" of finished studies to copy as history


@dataclass(frozen=True)
class AugmentConfig:
    """[data.augment]: Tang et al.'s operations, each word with one draw: masked (p_mask), swapped for another word of
    the training vocabulary (p_swap); then, with p_ngram, only an n-gram of the result kept (searcher.augment).
    How many copies a trial uses is the hyperparameter [search] augment."""

    p_mask: float = 0.1
    p_swap: float = 0.1
    p_ngram: float = 0.25
    ngram_range: tuple[int, ...] = (1, 5)


@dataclass(frozen=True)
class DataSection:
    dataset: Optional[str] = None
    subset: Optional[str] = None
    revision: Optional[str] = None
    train: Optional[str] = field(default=None, metadata={"parse": "source"})
    validation: Optional[str] = field(default=None, metadata={"parse": "source"})
    test: Optional[str] = field(default=None, metadata={"parse": "source"})
    train_split: str = "train"
    validation_split: Optional[str] = "validation"
    test_split: Optional[str] = None
    text_columns: tuple[str, ...] = ("sentence",)
    label_column: str = "label"
    label_names: Optional[tuple[str, ...]] = None
    exclude_labels: tuple[str, ...] = ()
    deduplicate: bool = False
    holdout: Optional[float] = None
    max_train_samples: Optional[int] = None
    max_eval_samples: Optional[int] = None
    max_length: int = 128
    # unlabeled text for the distillation term (labelled by the teacher once): a local file or a Hub dataset
    transfer: Optional[str] = field(default=None, metadata={"parse": "source"})
    transfer_dataset: Optional[str] = None
    transfer_subset: Optional[str] = None
    transfer_split: str = "train"
    transfer_text_columns: Optional[tuple[str, ...]] = None  # default: text_columns
    max_transfer_samples: Optional[int] = None
    augment: AugmentConfig = field(default_factory=AugmentConfig, metadata={"parse": "table"})

    @property
    def has_transfer(self) -> bool:
        return bool(self.transfer or self.transfer_dataset)


@dataclass(frozen=True)
class FineTuneConfig:
    epochs: int = 3
    learning_rate: float = 5e-5
    batch_size: int = 32
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1


@dataclass(frozen=True)
class TeacherSection:
    model: Optional[str] = field(default=None, metadata={"parse": "source"})
    base: Optional[str] = field(default=None, metadata={"parse": "source"})
    revision: Optional[str] = None
    fine_tune: FineTuneConfig = field(default_factory=FineTuneConfig, metadata={"parse": "table"})
    inference_batch_size: int = 256


DEFAULT_CHECKPOINT = "google/bert_uncased_L-{layers}_H-{hidden}_A-{heads}"


@dataclass(frozen=True)
class StudentSection:
    layers: tuple[int, ...] = (2, 4)
    hidden: Optional[tuple[int, ...]] = None
    checkpoint: str = DEFAULT_CHECKPOINT
    init: tuple[Literal["pretrained", "teacher", "random"], ...] = ("pretrained",)  # a list is searched
    checkpoints: Optional[tuple[str, ...]] = None

    @property
    def needs_teacher_model(self) -> bool:
        return any(i != "pretrained" for i in self.init)


# one field per hyperparameter of the registry (searcher.hyperparams): a number fixes it, a range or list searches it
SearchSection = dataclasses.make_dataclass(
    "SearchSection", [(h.name, Dimension, field(default=h.default, metadata={"parse": "dim"}))
                      for h in hyperparams.REGISTRY], frozen=True)
SearchSection.__module__ = __name__


@dataclass(frozen=True)
class TrainSection:
    device: str = "auto"
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    micro_batch_size: Optional[int] = None
    eval_batch_size: Optional[int] = None
    group_by_length: bool = True
    latency: bool = True
    num_threads: Optional[int] = None


@dataclass(frozen=True)
class CardSection:
    template: Optional[Path] = field(default=None, metadata={"parse": "path"})
    license: str = "apache-2.0"
    language: Optional[str] = "en"
    dataset_name: Optional[str] = None  # the dataset's name in the card (default: the Hub id or the train file)
    base_model: Optional[str] = None  # the Hub id of a local or packaged teacher/student, for base_model and links


@dataclass(frozen=True)
class HubSection:
    repo_id: Optional[str] = None
    private: bool = True
    push: Literal["none", "best", "top-k", "pareto"] = "none"
    top_k: int = 3


@dataclass(frozen=True)
class ExportSection:
    """[export]: the deployable forms each kept student is exported to and measured in (searcher.export).
    `formats = []` turns export off. Objectives may name a format: "accuracy@onnx-int8", "latency_ms@onnx"."""

    formats: tuple[Literal["onnx", "onnx-int8"], ...] = EXPORT_FORMATS


@dataclass(frozen=True)
class MetricsSection:
    """[metrics]: `report = [...]` names metrics computed and recorded but not optimized; a `[metrics.NAME]`
    table says how to load and call one `evaluate` metric (see searcher.metrics)."""

    report: tuple[str, ...] = ()
    specs: tuple[metrics.MetricSpec, ...] = ()

    @property
    def by_name(self) -> dict[str, metrics.MetricSpec]:
        return {m.name: m for m in self.specs}


@dataclass(frozen=True)
class StudyConfig:
    path: Path
    study: StudySection
    data: DataSection
    teacher: TeacherSection
    student: StudentSection
    search: SearchSection
    train: TrainSection
    card: CardSection
    hub: HubSection
    export: ExportSection
    enqueue: tuple[dict, ...]
    raw: dict = field(repr=False, compare=False)
    metrics: MetricsSection = field(default_factory=MetricsSection)

    @property
    def directory(self) -> Path:
        return self.path.parent

    @property
    def multi_objective(self) -> bool:
        return len(self.study.directions) > 1

    @property
    def output_dir(self) -> Path:
        return self.study.output_dir or self.directory / self.study.name

    @property
    def models_dir(self) -> Path:
        return self.output_dir / "models"

    @property
    def artifacts_dir(self) -> Path:
        return self.output_dir / "artifacts"

    @property
    def cache_dir(self) -> Path:
        if self.study.cache_dir is not None:
            return self.study.cache_dir
        if os.environ.get(CACHE_ENV):
            return Path(os.environ[CACHE_ENV]).expanduser().resolve()
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(base) / "searcher"

    def storage_url(self, override: str | None = None) -> str:
        """The storage URL: the --storage flag, then $SEARCHER_STORAGE, then [study] storage, then SQLite beside
        the study file. Environment first so that passwords stay out of study files."""
        url = override or os.environ.get(STORAGE_ENV) or self.study.storage
        if url:
            return url
        return f"sqlite:///{(self.directory / (self.study.name + '.db')).as_posix()}"

    def resolve_file(self, relative: str) -> str:
        """A data file relative to the study file (package: sources, files shipped by a PyPI package, stay as is)."""
        if relative.startswith("package:"):
            return relative
        return str((self.directory / Path(relative).expanduser()).resolve())

    def resolve_model(self, source: str) -> str:
        """A model source: an existing local folder (relative to the study file), a package: source, else a Hub id."""
        if source.startswith("package:"):
            return source
        candidate = self.directory / Path(source).expanduser()
        if candidate.exists() or source.startswith((".", "/", "~")):
            return str(candidate.resolve())
        return source


SECTIONS = {
    "study": StudySection,
    "data": DataSection,
    "teacher": TeacherSection,
    "student": StudentSection,
    "search": SearchSection,
    "train": TrainSection,
    "card": CardSection,
    "hub": HubSection,
    "export": ExportSection,
}


# ---------------------------------------------------------------------------------------------------------------
# Loading


def load_study(path: str | os.PathLike) -> StudyConfig:
    """Read and validate a study file. Raises ConfigError naming the file, key and fix."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"study file {path} does not exist; pass the path of a .toml study file (see studies/)")
    path = path.resolve()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e}); fix the syntax at that line") from e
    return parse_study(raw, path)


def parse_study(raw: dict, path: Path) -> StudyConfig:
    known = set(SECTIONS) | {"enqueue", "metrics"}
    for key in raw:
        if key not in known:
            raise ConfigError(_unknown(path, "", key, known))
    if "study" not in raw or "name" not in raw.get("study", {}):
        raise ConfigError(f"{path}: [study] name is missing; add name = \"my-study\" under [study]")
    sections = {}
    for name, cls in SECTIONS.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{name}] must be a table, got {type(table).__name__}")
        sections[name] = _build(cls, table, path, name)
    enqueue = raw.get("enqueue", [])
    if not isinstance(enqueue, list) or not all(isinstance(e, dict) for e in enqueue):
        raise ConfigError(f"{path}: enqueue must be an array of tables ([[enqueue]] ...)")
    config = StudyConfig(path=path, enqueue=tuple(enqueue), raw=raw,
                         metrics=_metrics_section(raw.get("metrics", {}), path), **sections)
    return _check(config)


def _unknown(path: Path, section: str, key: str, allowed) -> str:
    where = f"[{section}] " if section else ""
    close = difflib.get_close_matches(key, list(allowed), n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(sorted(allowed))}"
    what = "key" if section else "section"
    return f"{path}: {where}unknown {what} '{key}'; {hint}"


def _build(cls, table: dict, path: Path, section: str):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(_unknown(path, section, key, fields))
        where = f"{path}: [{section}] {key}"
        parse = fields[key].metadata.get("parse")
        if parse == "dim":
            h = hyperparams.BY_NAME[key]
            values[key] = _dimension(value, where, integer=h.kind is int, log=h.log, list_means=h.list_means)
        elif parse == "pruner":
            values[key] = _kind_table(value, where, PrunerConfig, PRUNER_OPTIONS, "median")
        elif parse == "sampler":
            values[key] = _kind_table(value, where, SamplerConfig, SAMPLER_OPTIONS, "tpe")
        elif parse == "stop":
            values[key] = _stop(value, where)
        elif parse == "table":
            if not isinstance(value, dict):
                raise ConfigError(f"{where} must be a table ([{section}.{key}])")
            values[key] = _build(hints[key], value, path, f"{section}.{key}")
        elif parse == "path":
            values[key] = _path(value, where, path)
        else:
            values[key] = _typed(value, hints[key], where)
            if parse == "source" and not values[key]:
                raise ConfigError(f"{where} must not be empty")
    missing = [f.name for f in fields.values()
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in values]
    if missing:
        raise ConfigError(f"{path}: [{section}] {missing[0]} is required")
    return cls(**values)


def _typed(value: Any, hint: Any, where: str) -> Any:
    """Check `value` against a simple type hint; lists become tuples. Raises ConfigError naming the expected type."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _typed(value, args[0], where)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{where} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
        return value
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list of {_name(item)}, got {value!r}")
        return tuple(dict.fromkeys(_typed(v, item, where) for v in value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if not _number(value):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    raise TypeError(f"no validator for {hint}")  # a programming error, not user input


def _name(hint: Any) -> str:
    return {int: "integers", float: "numbers", str: "strings"}.get(hint, str(hint))


def _path(value: Any, where: str, study_path: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a path (a non-empty string), got {value!r}")
    p = Path(value).expanduser()
    return p if p.is_absolute() else (study_path.parent / p).resolve()


def _metrics_section(table: Any, path: Path) -> MetricsSection:
    where = f"{path}: [metrics]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    report = _typed(table.get("report", []), tuple[str, ...], f"{where} report")
    specs = []
    options = {f.name for f in dataclasses.fields(metrics.MetricSpec)} - {"name"}
    for name, value in table.items():
        if name == "report":
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"{where} {name} must be a table [metrics.{name}] with load/config_name/key/kwargs, "
                              f"or the list report = [...]")
        unknown = set(value) - options
        if unknown:
            raise ConfigError(_unknown(path, f"metrics.{name}", sorted(unknown)[0], options))
        kwargs = value.get("kwargs", {})
        if not isinstance(kwargs, dict):
            raise ConfigError(f"{where}.{name} kwargs must be a table, e.g. kwargs = {{ average = \"binary\" }}")
        strings = {k: _typed(value[k], str, f"{where}.{name} {k}") for k in ("load", "config_name", "key")
                   if k in value}
        specs.append(metrics.MetricSpec(name, kwargs=json.dumps(kwargs, sort_keys=True), **strings))
    return MetricsSection(report=report, specs=tuple(specs))


def _kind_table(value: Any, where: str, cls, options: dict[str, tuple[str, ...]], default: str):
    """A sampler or pruner: a type name, or a table with `type` and that type's options."""
    kinds = ", ".join(f'"{k}"' for k in options)
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be one of {kinds} or a table, e.g. {{ type = \"{default}\" }}, got {value!r}")
    kind = value.get("type", default)
    if kind not in options:
        raise ConfigError(f"{where} must be one of {kinds}, got {kind!r}")
    hints = typing.get_type_hints(cls)
    allowed = options[kind]
    for key in value:
        if key == "type":
            continue
        if key not in hints:
            known = sorted({k for opts in options.values() for k in opts})
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"{kind}'s options: {', '.join(allowed) or 'none'}"
            raise ConfigError(f"{where}: unknown option '{key}'; {hint}")
        if key not in allowed:
            raise ConfigError(f"{where}: option '{key}' does not apply to type {kind!r} (its options: "
                              f"{', '.join(allowed) or 'none'})")
    return cls(**{k: v if k == "type" else _typed(v, hints[k], f"{where}.{k}") for k, v in value.items()})


def _stop(value: Any, where: str) -> StopConfig:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table, e.g. stop = {{ patience = 10, min_delta = 0.002 }} or "
                          f"stop = {{ terminator = true }}, got {value!r}")
    hints = typing.get_type_hints(StopConfig)
    for key in value:
        if key not in hints:
            raise ConfigError(_unknown_option(where, key, hints))
    stop = StopConfig(**{k: _typed(v, hints[k], f"{where}.{k}") for k, v in value.items()})
    if stop.patience is None and not stop.terminator:
        raise ConfigError(f"{where} needs patience = N (finished trials without improvement) and/or terminator = true")
    if stop.patience is not None and stop.patience < 1:
        raise ConfigError(f"{where}.patience must be a positive number of trials, got {stop.patience}")
    if stop.min_delta < 0:
        raise ConfigError(f"{where}.min_delta must be >= 0 (an improvement in the objective's units), got "
                          f"{stop.min_delta}")
    if stop.min_trials < 2:
        raise ConfigError(f"{where}.min_trials must be >= 2 (the terminator fits a GP to the complete trials), got "
                          f"{stop.min_trials}")
    if "min_trials" in value and not stop.terminator:
        raise ConfigError(f"{where}.min_trials applies to the terminator; add terminator = true or drop it")
    return stop


def _unknown_option(where: str, key: str, allowed) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(sorted(allowed))}"
    return f"{where}: unknown option '{key}'; {hint}"


# ---------------------------------------------------------------------------------------------------------------
# Cross-field checks: everything that can be known without loading a model or data.


def _check(config: StudyConfig) -> StudyConfig:
    study = _check_study(config)
    _check_data(config)
    _check_teacher(config)
    _check_student(config)
    _check_search(config)
    _check_train(config)
    _check_hub(config)
    return dataclasses.replace(config, study=study)


def _check_study(config: StudyConfig) -> StudySection:
    """[study] on its own and against the metrics; returns it with objectives, pruner and grace period resolved."""
    p, s = config.path, config.study
    if not SAFE_NAME.fullmatch(s.name):
        raise ConfigError(f"{p}: [study] name {s.name!r} names folders and files: use letters, digits and . _ + - "
                          f"(starting with a letter or digit, at most 128 characters), e.g. \"sst2-mini\"")
    for key in ("n_trials", "keep_best", "heartbeat_interval", "max_retry"):
        v = getattr(s, key)
        if v is not None and v < (0 if key == "max_retry" else 1):
            raise ConfigError(f"{p}: [study] {key} must be positive, got {v}")
    for entry in s.warm_start:
        url, _, name = entry.rpartition("::")
        if not url.strip() or not name.strip():
            raise ConfigError(f"{p}: [study] warm_start entry {redact.text(entry)!r} must be "
                              f"\"STORAGE_URL::STUDY_NAME\", e.g. [\"sqlite:////abs/path/other.db::other-study\"]")
    if s.timeout is not None and s.timeout <= 0:
        raise ConfigError(f"{p}: [study] timeout must be positive seconds, got {s.timeout}")
    if not 1 <= len(s.directions) <= 3 or any(x not in ("maximize", "minimize") for x in s.directions):
        raise ConfigError(f"{p}: [study] directions must be one to three of \"maximize\"/\"minimize\", e.g. "
                          f"[\"maximize\"] or [\"maximize\", \"minimize\"], got {list(s.directions)}")
    objectives = s.objectives or (("accuracy",) if len(s.directions) == 1 else ("accuracy", "latency_ms"))
    if len(objectives) != len(s.directions):
        raise ConfigError(f"{p}: [study] objectives has {len(objectives)} names but directions has "
                          f"{len(s.directions)}; give one name per direction")
    for name, direction in zip(objectives, s.directions):
        metric, form = metrics.split_objective(name)
        metrics.check_name(metric, f"{p}: [study] objectives")
        if form is None and metric in metrics.FORMAT_MEASURES and metric not in metrics.MEASURED:
            raise ConfigError(f"{p}: [study] objective {name!r} needs a format, e.g. \"{metric}@onnx-int8\"")
        if form is not None:
            if metric in metrics.MEASURED and metric not in metrics.FORMAT_MEASURES:
                raise ConfigError(f"{p}: [study] objective {name!r}: {metric} is the same in every format; drop "
                                  f"\"@{form}\"")
            if form not in config.export.formats + ("pytorch",):
                raise ConfigError(f"{p}: [study] objective {name!r} needs the {form!r} format: add it to [export] "
                                  f"formats (have {list(config.export.formats)}; formats: "
                                  f"{', '.join(EXPORT_FORMATS + ('pytorch',))})")
        natural = metrics.natural_direction(metric)
        if natural and direction != natural:
            raise ConfigError(f"{p}: [study] objective {name!r} should be paired with direction {natural!r}")
    for name in config.metrics.report:
        metrics.check_name(name, f"{p}: [metrics] report")
        if name in metrics.BUILTIN or name in metrics.MEASURED or name in metrics.FORMAT_MEASURES:
            raise ConfigError(f"{p}: [metrics] report: {name!r} is always recorded; list only other metrics there")
    if "latency_ms" in objectives and not config.train.latency:
        raise ConfigError(f"{p}: [study] objective 'latency_ms' needs [train] latency = true")
    _check_sampler(p, s.sampler, multi=len(s.directions) > 1)
    st = config.student
    if s.sampler.type == "cmaes" and "teacher" in st.init and len(st.init) > 1 and len(st.hidden or ()) > 1:
        # the hidden size is a parameter of non-teacher students only; CMA-ES keys its generations by number, not
        # by search space, and fails when the space changes between trials (Optuna: no dynamic search space)
        raise ConfigError(f"{p}: [study] sampler = \"cmaes\" needs a fixed search space, but with [student] init = "
                          f"{list(st.init)} the hidden size is searched for non-teacher students only; search "
                          f"teacher-initialised students in their own study, or use \"tpe\" (the default) or \"gp\"")
    pruner = s.pruner
    if len(s.directions) > 1:
        if pruner is not None and pruner.type != "none":
            raise ConfigError(f"{p}: [study] pruner = {pruner.type!r} needs a single objective; Optuna cannot prune "
                              f"multi-objective trials, so every trial runs all its epochs (to spend less, use fewer "
                              f"epochs or a single-objective study first). Remove the pruner line or set pruner = "
                              f"\"none\"")
        pruner = PrunerConfig(type="none")
    elif pruner is None:
        pruner = PrunerConfig()
    _check_pruner(p, pruner, int(dimension_values(config.search.epochs)[1]))
    if s.stop is not None:
        _check_stop(p, s.stop, objectives, multi=len(s.directions) > 1)
    return dataclasses.replace(s, objectives=tuple(objectives), pruner=pruner,
                               grace_period=s.grace_period or 2 * s.heartbeat_interval)


def _check_sampler(p: Path, sampler: SamplerConfig, multi: bool) -> None:
    where = f"{p}: [study] sampler"
    if multi and sampler.type == "cmaes":
        raise ConfigError(f"{where} = \"cmaes\" optimizes one objective; with several use \"tpe\" (the default), "
                          f"\"gp\" or \"nsga2\"")
    if not multi and sampler.type == "nsga2":
        raise ConfigError(f"{where} = \"nsga2\" ranks trials by Pareto dominance, which needs two or more "
                          f"objectives; with one objective use \"tpe\" (the default), \"gp\" or \"cmaes\"")
    at_least = {"n_startup_trials": 0, "n_ei_candidates": 1, "popsize": 2, "population_size": 2}
    for key, low in at_least.items():
        v = getattr(sampler, key)
        if v is not None and v < low:
            raise ConfigError(f"{where}.{key} must be >= {low}, got {v}")
    if sampler.sigma0 is not None and sampler.sigma0 <= 0:
        raise ConfigError(f"{where}.sigma0 must be > 0 (CMA-ES's initial step size), got {sampler.sigma0}")
    for key in ("mutation_prob", "crossover_prob", "swapping_prob"):
        v = getattr(sampler, key)
        if v is not None and not 0 <= v <= 1:
            raise ConfigError(f"{where}.{key} is a probability and must lie in [0, 1], got {v}")


def _check_pruner(p: Path, pruner: PrunerConfig, epochs: int) -> None:
    where = f"{p}: [study] pruner"
    for key, low in (("n_startup_trials", 0), ("n_warmup_steps", 0), ("reduction_factor", 2),
                     ("min_early_stopping_rate", 0), ("patience", 0)):
        v = getattr(pruner, key)
        if v < low:
            raise ConfigError(f"{where}.{key} must be >= {low}, got {v}")
    if pruner.min_delta < 0:
        raise ConfigError(f"{where}.min_delta must be >= 0, got {pruner.min_delta}")
    # a trial is never pruned after its last epoch (searcher.objective), and PatientPruner needs patience + 2 reports
    if pruner.type == "patient" and pruner.patience + 2 > epochs - 1:
        raise ConfigError(f"{where}: patience = {pruner.patience} can never stop a trial of {epochs} epochs (it needs "
                          f"patience + 2 epochs before the last); use patience = {max(epochs - 3, 0)} or more epochs"
                          if epochs >= 3 else f"{where} = \"patient\" needs 3 or more epochs, the study has {epochs}")


# objectives whose noise the terminator can estimate itself: proportions measured on the validation split
PROPORTIONS = ("accuracy", "f1", "precision", "recall")


def _check_stop(p: Path, stop: StopConfig, objectives: tuple[str, ...], multi: bool) -> None:
    where = f"{p}: [study] stop"
    if multi:
        raise ConfigError(f"{where} needs a single objective (a Pareto front has no single best value to watch); a "
                          f"multi-objective study runs until n_trials or timeout: remove the stop line")
    metric = metrics.split_objective(objectives[0])[0]
    if stop.terminator and stop.min_delta == 0 and metric not in PROPORTIONS:
        raise ConfigError(f"{where}: the terminator needs min_delta (the noise of {objectives[0]!r}, e.g. one standard "
                          f"error) for an objective other than {', '.join(PROPORTIONS)}")


def _check_data(config: StudyConfig) -> None:
    p, d = config.path, config.data
    if d.dataset and d.train:
        raise ConfigError(f"{p}: [data] give either dataset (a Hub id) or local train/validation files, not both")
    if not d.dataset and not d.train:
        raise ConfigError(f"{p}: [data] needs dataset = \"<hub id>\" or train = \"path/to/train.csv\"")
    if not d.dataset and not d.validation and d.holdout is None:
        raise ConfigError(f"{p}: [data] local data needs validation = \"path\" or holdout = 0.1 "
                          f"(a fraction or a row count of train to evaluate on)")
    if not 1 <= len(d.text_columns) <= 2:
        raise ConfigError(f"{p}: [data] text_columns takes one column or two (sentence pairs), got {list(d.text_columns)}")
    if d.holdout is not None and not (0 < d.holdout < 1 or (d.holdout >= 1 and float(d.holdout).is_integer())):
        raise ConfigError(f"{p}: [data] holdout must be a fraction in (0, 1) or a whole row count, got {d.holdout}")
    for key in ("max_train_samples", "max_eval_samples"):
        v = getattr(d, key)
        if v is not None and v < 1:
            raise ConfigError(f"{p}: [data] {key} must be positive, got {v}")
    if d.transfer and d.transfer_dataset:
        raise ConfigError(f"{p}: [data] give either transfer (a file) or transfer_dataset (a Hub id), not both")
    columns = d.transfer_text_columns or d.text_columns
    if len(columns) != len(d.text_columns):
        raise ConfigError(f"{p}: [data] transfer_text_columns {list(columns)} must name as many columns as "
                          f"text_columns {list(d.text_columns)} (one for sentences, two for pairs)")
    if d.max_transfer_samples is not None and d.max_transfer_samples < 1:
        raise ConfigError(f"{p}: [data] max_transfer_samples must be positive, got {d.max_transfer_samples}")
    a = d.augment
    for key in ("p_mask", "p_swap", "p_ngram"):
        if not 0 <= getattr(a, key) <= 1:
            raise ConfigError(f"{p}: [data.augment] {key} is a probability and must lie in [0, 1], got "
                              f"{getattr(a, key)}")
    if a.p_mask + a.p_swap > 1:
        raise ConfigError(f"{p}: [data.augment] p_mask + p_swap = {a.p_mask + a.p_swap:g} must be at most 1 (one "
                          f"draw per word decides mask, swap or keep)")
    if len(a.ngram_range) not in (1, 2) or not 1 <= min(a.ngram_range) <= max(a.ngram_range):
        raise ConfigError(f"{p}: [data.augment] ngram_range must be [low, high] with 1 <= low <= high, got "
                          f"{list(a.ngram_range)}")
    if d.max_length < 8:
        raise ConfigError(f"{p}: [data] max_length {d.max_length} leaves little or no room for text after the "
                          f"special tokens ([CLS], [SEP]); use 16 or more (128 is typical)")
    if d.max_length > 4096:
        raise ConfigError(f"{p}: [data] max_length {d.max_length} is larger than any BERT supports; use <= 512")


def _check_teacher(config: StudyConfig) -> None:
    p, t = config.path, config.teacher
    if bool(t.model) == bool(t.base):
        raise ConfigError(f"{p}: [teacher] give exactly one of model = \"<fine-tuned classifier>\" or "
                          f"base = \"<pretrained model to fine-tune once>\"")
    ft = t.fine_tune
    if ft.epochs < 1 or ft.batch_size < 1 or ft.learning_rate <= 0 or not 0 <= ft.warmup_ratio < 1 \
            or ft.weight_decay < 0:
        raise ConfigError(f"{p}: [teacher.fine_tune] needs epochs >= 1, batch_size >= 1, learning_rate > 0, "
                          f"weight_decay >= 0 and 0 <= warmup_ratio < 1")
    if t.inference_batch_size < 1:
        raise ConfigError(f"{p}: [teacher] inference_batch_size must be positive, got {t.inference_batch_size}")


def _check_student(config: StudyConfig) -> None:
    p, st = config.path, config.student
    if not st.init:
        raise ConfigError(f"{p}: [student] init must name at least one of \"pretrained\", \"teacher\", \"random\"")
    if st.checkpoints is not None:
        if not st.checkpoints:
            raise ConfigError(f"{p}: [student] checkpoints is empty; list at least one checkpoint")
        if st.init != ("pretrained",):
            raise ConfigError(f"{p}: [student] init = {list(st.init)} builds students from the grid; a checkpoints "
                              f"list needs init = \"pretrained\"")
        if "layers" in config.raw.get("student", {}) or "hidden" in config.raw.get("student", {}):
            raise ConfigError(f"{p}: [student] give either checkpoints = [...] or the layers/hidden grid, not both")
        return
    if not st.layers or any(x < 1 or x > 48 for x in st.layers):
        raise ConfigError(f"{p}: [student] layers must be a list of integers between 1 and 48, got {list(st.layers)}")
    if st.hidden is None and st.init != ("teacher",):
        raise ConfigError(f"{p}: [student] hidden is required, e.g. hidden = [128, 256]")
    for h in st.hidden or ():
        if h < 64 or h % 64:
            raise ConfigError(f"{p}: [student] hidden {h} is not a multiple of 64 (heads = hidden / 64); "
                              f"use e.g. 128, 256, 512 or 768")
    if "pretrained" in st.init and "{" not in st.checkpoint:
        raise ConfigError(f"{p}: [student] checkpoint must be a template with {{layers}}, {{hidden}} and "
                          f"{{heads}}, e.g. {DEFAULT_CHECKPOINT!r}")
    try:
        st.checkpoint.format(layers=2, hidden=128, heads=2)
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(f"{p}: [student] checkpoint template {st.checkpoint!r} may only use {{layers}}, "
                          f"{{hidden}} and {{heads}}") from e


def _check_search(config: StudyConfig) -> None:
    """Every hyperparameter's values must lie in its allowed range (declared in searcher.hyperparams)."""
    for h in hyperparams.REGISTRY:
        dim = getattr(config.search, h.name)
        lo, hi = dimension_values(dim)
        if not (h.admits(lo) and h.admits(hi)):
            got = f"{lo}" if lo == hi else f"[{lo}, {hi}]"
            raise ConfigError(f"{config.path}: [search] {h.name} must lie in {h.allowed()} ({h.help}), got {got}")
        if not h.searchable and not isinstance(dim, Fixed):
            raise ConfigError(f"{config.path}: [search] {h.name} cannot be searched; give one value")


def _check_train(config: StudyConfig) -> None:
    p, tr = config.path, config.train
    for key in ("micro_batch_size", "eval_batch_size", "num_threads"):
        v = getattr(tr, key)
        if v is not None and v < 1:
            raise ConfigError(f"{p}: [train] {key} must be a positive integer, got {v}")
    if tr.device not in ("auto", "cpu") and not tr.device.startswith(("cuda", "mps")):
        raise ConfigError(f"{p}: [train] device must be \"auto\", \"cpu\", \"cuda\" or \"cuda:N\", got {tr.device!r}")


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def _check_hub(config: StudyConfig) -> None:
    p, hub = config.path, config.hub
    if config.card.base_model and not HUB_ID.fullmatch(config.card.base_model):
        raise ConfigError(f"{p}: [card] base_model {config.card.base_model!r} is not a Hub model id; use owner/name, "
                          f"e.g. \"sentence-transformers/all-MiniLM-L6-v2\"")
    if hub.push != "none" and not hub.repo_id:
        raise ConfigError(f"{p}: [hub] push = {hub.push!r} needs repo_id = \"owner/{{study}}-L{{layers}}-H{{hidden}}\"")
    if hub.top_k < 1:
        raise ConfigError(f"{p}: [hub] top_k must be >= 1")


def resolved_dict(config: StudyConfig) -> dict:
    """The resolved study file as plain JSON-safe data, passwords redacted (stored with the study)."""

    def plain(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj):
            kind = type(obj).__name__
            data = {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.name != "raw"}
            if kind in ("Fixed", "FloatRange", "IntRange", "Choices"):
                data = {"kind": kind.lower(), **data}
            return data
        if isinstance(obj, (list, tuple)):
            return [plain(x) for x in obj]
        if isinstance(obj, dict):
            return {str(k): plain(v) for k, v in obj.items()}
        if isinstance(obj, Path):
            return str(obj)
        return obj

    data = plain(config)
    data["path"] = str(config.path)
    return redact.deep(data)  # a storage URL's password must not reach the study (optuna-dashboard serves attrs)


# Settings a study may change between runs: its budget, where things go, how they run and how results are shown.
# Everything else defines what a trial is (search space, data, teacher, student, training), and must not change
# under a study's existing trials (searcher.optimize compares these at every start).
# Where the data and the teacher live is free too: their content is what counts (the caller adds the data's and the
# teacher's content fingerprints), so a moved project folder is still the same study.
FREE = {
    "study": {"name", "n_trials", "timeout", "storage", "keep_best", "output_dir", "cache_dir", "heartbeat_interval",
              "grace_period", "max_retry", "sampler", "pruner", "stop", "warm_start"},
    "data": {"train", "validation", "test"},
    "teacher": {"model", "base", "revision", "inference_batch_size"},
    "train": {"device", "amp", "micro_batch_size", "eval_batch_size", "latency", "num_threads"},
}
FREE_SECTIONS = {"path", "enqueue", "card", "hub", "export"}


def defining(config: StudyConfig) -> dict[str, Any]:
    """What defines the study's trials, flat and readable: {"[search] learning_rate": ..., ...}."""
    out: dict[str, Any] = {}
    for section, values in resolved_dict(config).items():
        if section in FREE_SECTIONS or not isinstance(values, dict):
            continue
        for key, value in values.items():
            if key not in FREE.get(section, ()):
                out[f"[{section}] {key}"] = value
    return out


def changed_settings(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Readable differences between two `defining` dicts, e.g. "[search] alpha: [0.0, 1.0] -> [0.0, 0.5]"."""
    def show(v: Any) -> str:
        if isinstance(v, dict) and "kind" in v:  # a search dimension
            kind = v["kind"]
            if kind == "fixed":
                return repr(v["value"])
            if kind == "choices":
                return str(list(v["values"]))
            return f"[{v['low']}, {v['high']}]" + (" (log)" if v.get("log") else "")
        return json.dumps(v) if not isinstance(v, str) else repr(v)

    keys = list(dict.fromkeys(list(before) + list(now)))
    return [f"{k}: {show(before.get(k))} -> {show(now.get(k))}" for k in keys if before.get(k) != now.get(k)]

