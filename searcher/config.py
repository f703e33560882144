"""The study file: frozen, validated configuration read once from TOML.

One frozen dataclass per section. `load_study(path)` checks every key and type up front and raises `ConfigError`
with the file, the key and the fix, so nothing downstream ever sees a half-valid config.
This module must not import torch, transformers or optuna: `searcher --help` and config errors stay instant.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
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
MAX_BATCH_SIZE = 1024


# ---------------------------------------------------------------------------------------------------------------
# Search dimensions: a value is either fixed or searched. Only searcher.space turns these into trial.suggest_* calls.


@dataclass(frozen=True)
class Fixed:
    value: Any


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    log: bool = False
    step: int = 1


@dataclass(frozen=True)
class Choices:
    values: tuple


Dimension = Union[Fixed, FloatRange, IntRange, Choices]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _dimension(value: Any, where: str, *, integer: bool, log: bool, list_means: str) -> Dimension:
    """Parse a search value: a number (fixed), a [low, high] range or a list of choices, or a {low, high} table."""
    kind = "an integer" if integer else "a number"
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


def dimension_values(dim: Dimension) -> tuple[float, float]:
    """The smallest and largest value a dimension can take (for bounds checks and the card's 'searched ranges')."""
    if isinstance(dim, Fixed):
        return dim.value, dim.value
    if isinstance(dim, Choices):
        return min(dim.values), max(dim.values)
    return dim.low, dim.high


# ---------------------------------------------------------------------------------------------------------------
# Sections


@dataclass(frozen=True)
class PrunerConfig:
    type: Literal["median", "hyperband", "none"] = "median"
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    reduction_factor: int = 3


@dataclass(frozen=True)
class StudySection:
    name: str
    storage: Optional[str] = None
    n_trials: Optional[int] = None
    timeout: Optional[float] = None
    seed: int = 0
    directions: tuple[str, ...] = ("maximize",)
    objectives: Optional[tuple[str, ...]] = None
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Optional[PrunerConfig] = field(default=None, metadata={"parse": "pruner"})
    keep_best: int = 3
    output_dir: Optional[Path] = field(default=None, metadata={"parse": "path"})
    cache_dir: Optional[Path] = field(default=None, metadata={"parse": "path"})
    heartbeat_interval: int = 60
    grace_period: Optional[int] = None
    max_retry: int = 3


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


@dataclass(frozen=True)
class SearchSection:
    learning_rate: Dimension = field(default=FloatRange(1e-5, 1e-3, True), metadata={"parse": "dim"})
    batch_size: Dimension = field(default=Choices((16, 32, 64, 128)), metadata={"parse": "dim"})
    temperature: Dimension = field(default=FloatRange(1.0, 20.0), metadata={"parse": "dim"})
    alpha: Dimension = field(default=FloatRange(0.0, 1.0), metadata={"parse": "dim"})
    epochs: Dimension = field(default=Fixed(3), metadata={"parse": "dim"})
    weight_decay: Dimension = field(default=Fixed(0.0), metadata={"parse": "dim"})
    warmup_ratio: Dimension = field(default=Fixed(0.0), metadata={"parse": "dim"})


# how each search key is read: (integer?, log range?, what a list means)
SEARCH_KEYS = {
    "learning_rate": (False, True, "range"),
    "batch_size": (True, False, "choices"),
    "temperature": (False, False, "range"),
    "alpha": (False, False, "range"),
    "epochs": (True, False, "range"),
    "weight_decay": (False, False, "range"),
    "warmup_ratio": (False, False, "range"),
}


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


@dataclass(frozen=True)
class HubSection:
    repo_id: Optional[str] = None
    private: bool = True
    push: Literal["none", "best", "top-k", "pareto"] = "none"
    top_k: int = 3


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
    enqueue: tuple[dict, ...]
    raw: dict = field(repr=False, compare=False)

    @property
    def directory(self) -> Path:
        return self.path.parent

    @property
    def multi_objective(self) -> bool:
        return len(self.study.directions) > 1

    @property
    def objective_names(self) -> tuple[str, ...]:
        return self.study.objectives  # filled in by load_study

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
}
OBJECTIVES = ("accuracy", "f1", "precision", "recall", "latency_ms", "params_millions", "size_mb")
MINIMIZED = ("latency_ms", "params_millions", "size_mb")


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
    known = set(SECTIONS) | {"enqueue"}
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
    config = StudyConfig(path=path, enqueue=tuple(enqueue), raw=raw, **sections)
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
            integer, log, list_means = SEARCH_KEYS[key]
            values[key] = _dimension(value, where, integer=integer, log=log, list_means=list_means)
        elif parse == "pruner":
            values[key] = _pruner(value, where)
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


def _pruner(value: Any, where: str) -> PrunerConfig:
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be \"median\", \"hyperband\", \"none\" or a table with type = ...")
    table = dict(value)
    kind = table.get("type", "median")
    if kind not in ("median", "hyperband", "none"):
        raise ConfigError(f"{where} must be \"median\", \"hyperband\" or \"none\", got {kind!r}")
    fields = {f.name for f in dataclasses.fields(PrunerConfig)}
    for key in table:
        if key not in fields:
            raise ConfigError(f"{where}: unknown pruner option '{key}'; allowed: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(PrunerConfig)
    return PrunerConfig(**{k: v if k == "type" else _typed(v, hints[k], f"{where}.{k}") for k, v in table.items()})


# ---------------------------------------------------------------------------------------------------------------
# Cross-field checks: everything that can be known without loading a model or data.


def _check(config: StudyConfig) -> StudyConfig:
    p = config.path
    s, d, t, st, se, tr, hub = (config.study, config.data, config.teacher, config.student, config.search,
                                 config.train, config.hub)

    if not s.name or "/" in s.name or s.name.strip() != s.name:
        raise ConfigError(f"{p}: [study] name {s.name!r} must be non-empty, without '/' or surrounding spaces")
    for key in ("n_trials", "keep_best", "heartbeat_interval", "max_retry"):
        v = getattr(s, key)
        if v is not None and v < (0 if key == "max_retry" else 1):
            raise ConfigError(f"{p}: [study] {key} must be positive, got {v}")
    if s.timeout is not None and s.timeout <= 0:
        raise ConfigError(f"{p}: [study] timeout must be positive seconds, got {s.timeout}")
    if not 1 <= len(s.directions) <= 2 or any(x not in ("maximize", "minimize") for x in s.directions):
        raise ConfigError(f"{p}: [study] directions must be [\"maximize\"] or [\"maximize\", \"minimize\"], "
                          f"got {list(s.directions)}")
    objectives = s.objectives or (("accuracy",) if len(s.directions) == 1 else ("accuracy", "latency_ms"))
    if len(objectives) != len(s.directions):
        raise ConfigError(f"{p}: [study] objectives has {len(objectives)} names but directions has "
                          f"{len(s.directions)}; give one name per direction")
    for name, direction in zip(objectives, s.directions):
        if name not in OBJECTIVES:
            raise ConfigError(f"{p}: [study] objectives: unknown metric {name!r}; choose from {', '.join(OBJECTIVES)}")
        expected = "minimize" if name in MINIMIZED else "maximize"
        if direction != expected:
            raise ConfigError(f"{p}: [study] objective {name!r} should be paired with direction {expected!r}")
    if "latency_ms" in objectives and not config.train.latency:
        raise ConfigError(f"{p}: [study] objective 'latency_ms' needs [train] latency = true")
    pruner = s.pruner
    if len(s.directions) > 1:
        if pruner is not None and pruner.type != "none":
            raise ConfigError(f"{p}: [study] pruner = {pruner.type!r} needs a single objective; Optuna cannot prune "
                              f"multi-objective trials. Remove the pruner line or set pruner = \"none\"")
        pruner = PrunerConfig(type="none")
    elif pruner is None:
        pruner = PrunerConfig()
    study = dataclasses.replace(s, objectives=tuple(objectives), pruner=pruner,
                                grace_period=s.grace_period or 2 * s.heartbeat_interval)

    # data
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
    for key in ("max_length", "max_train_samples", "max_eval_samples"):
        v = getattr(d, key)
        if v is not None and v < 1:
            raise ConfigError(f"{p}: [data] {key} must be positive, got {v}")
    if d.max_length > 4096:
        raise ConfigError(f"{p}: [data] max_length {d.max_length} is larger than any BERT supports; use <= 512")

    # teacher
    if bool(t.model) == bool(t.base):
        raise ConfigError(f"{p}: [teacher] give exactly one of model = \"<fine-tuned classifier>\" or "
                          f"base = \"<pretrained model to fine-tune once>\"")
    ft = t.fine_tune
    if ft.epochs < 1 or ft.batch_size < 1 or ft.learning_rate <= 0 or not 0 <= ft.warmup_ratio < 1:
        raise ConfigError(f"{p}: [teacher.fine_tune] needs epochs >= 1, batch_size >= 1, learning_rate > 0 and "
                          f"0 <= warmup_ratio < 1")

    # student
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
    else:
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

    # search
    lr_lo, lr_hi = dimension_values(se.learning_rate)
    if lr_lo <= 0 or lr_hi >= 1:
        raise ConfigError(f"{p}: [search] learning_rate must lie in (0, 1), got [{lr_lo}, {lr_hi}]")
    bs_lo, bs_hi = dimension_values(se.batch_size)
    if bs_lo < 1:
        raise ConfigError(f"{p}: [search] batch_size must be >= 1, got {bs_lo}")
    t_lo, _ = dimension_values(se.temperature)
    if t_lo <= 0:
        raise ConfigError(f"{p}: [search] temperature must be > 0, got {t_lo}")
    a_lo, a_hi = dimension_values(se.alpha)
    if a_lo < 0 or a_hi > 1:
        raise ConfigError(f"{p}: [search] alpha weighs the label loss and must lie in [0, 1], got [{a_lo}, {a_hi}]")
    e_lo, _ = dimension_values(se.epochs)
    if e_lo < 1:
        raise ConfigError(f"{p}: [search] epochs must be >= 1, got {e_lo}")
    w_lo, w_hi = dimension_values(se.warmup_ratio)
    if w_lo < 0 or w_hi >= 1:
        raise ConfigError(f"{p}: [search] warmup_ratio must lie in [0, 1), got [{w_lo}, {w_hi}]")
    if dimension_values(se.weight_decay)[0] < 0:
        raise ConfigError(f"{p}: [search] weight_decay must be >= 0")

    # train
    for key in ("micro_batch_size", "eval_batch_size", "num_threads"):
        v = getattr(tr, key)
        if v is not None and v < 1:
            raise ConfigError(f"{p}: [train] {key} must be a positive integer, got {v}")
    if tr.device not in ("auto", "cpu") and not tr.device.startswith(("cuda", "mps")):
        raise ConfigError(f"{p}: [train] device must be \"auto\", \"cpu\", \"cuda\" or \"cuda:N\", got {tr.device!r}")

    # hub
    if hub.push != "none" and not hub.repo_id:
        raise ConfigError(f"{p}: [hub] push = {hub.push!r} needs repo_id = \"owner/{{study}}-L{{layers}}-H{{hidden}}\"")
    if hub.top_k < 1:
        raise ConfigError(f"{p}: [hub] top_k must be >= 1")

    return dataclasses.replace(config, study=study)


def resolved_dict(config: StudyConfig) -> dict:
    """The resolved study file as plain JSON-safe data (stored with the study and in every trial record)."""

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
    return data
