"""Reading a study file: TOML into the schema's dataclasses, every key and type checked on the way.

`load_study(path)` checks every key and type up front and raises `ConfigError` with the file, the key and the fix,
then hands the config to searcher.config.rules for the checks between fields, so nothing downstream ever sees a
half-valid config. This module must not import torch, transformers or optuna.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from searcher import hyperparams
from searcher.tasks import metrics
from searcher.config.rules import check
from searcher.config.schema import (PRUNER_OPTIONS, SAMPLER_OPTIONS, SECTIONS, DistillSection, MetricsSection,
                                    PrunerConfig,
                                    SamplerConfig, StopConfig, StudyConfig, TeacherMember)
from searcher.errors import ConfigError
from searcher.hyperparams import Choices, Dimension, Fixed, FloatRange, IntRange

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib


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




def load_study(path: str | os.PathLike) -> StudyConfig:
    """Read and validate a study file. Raises ConfigError naming the file, key and fix."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ConfigError(f"study file {path} is a folder; pass the path of a .toml study file (see studies/)")
    if not path.is_file():
        raise ConfigError(f"study file {path} does not exist; pass the path of a .toml study file (see studies/)")
    path = path.resolve()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save the study file as UTF-8") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror or e}); check its permissions") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e}); fix the syntax at that line") from e
    return parse_study(raw, path)


def parse_study(raw: dict, path: Path) -> StudyConfig:
    known = set(SECTIONS) | {"enqueue", "metrics", "distill", "teachers"}
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
        sections[name] = _teacher(cls, table, path, name) if issubclass(cls, TeacherMember) else \
            _build(cls, table, path, name)
    enqueue = raw.get("enqueue", [])
    if not isinstance(enqueue, list) or not all(isinstance(e, dict) for e in enqueue):
        raise ConfigError(f"{path}: enqueue must be an array of tables ([[enqueue]] ...)")
    members = raw.get("teachers", [])
    if not isinstance(members, list) or not all(isinstance(e, dict) for e in members):
        raise ConfigError(f"{path}: teachers must be an array of tables ([[teachers]] ...)")
    teachers = tuple(_teacher(TeacherMember, m, path, f"teachers {i + 1}") for i, m in enumerate(members))
    config = StudyConfig(path=path, enqueue=tuple(enqueue), raw=raw, teachers=teachers,
                         metrics=_metrics_section(raw.get("metrics", {}), path),
                         distill=_distill_section(raw.get("distill", {}), path), **sections)
    return check(config)


def _unknown(path: Path, section: str, key: str, allowed) -> str:
    where = f"[{section}] " if section else ""
    close = difflib.get_close_matches(key, list(allowed), n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(sorted(allowed))}"
    what = "key" if section else "section"
    return f"{path}: {where}unknown {what} '{key}'; {hint}"


def _teacher(cls, table: dict, path: Path, section: str):
    """A teacher's table: the keys every kind has (TeacherMember's) and the keys of its kind, which the kind declares
    (searcher.teachers.TYPES: each kind's `Settings`). The kind is `type = "..."`, else the one its keys select."""
    from searcher.teachers import DEFAULT, TYPES

    own = {f.name for f in dataclasses.fields(cls) if f.name != "settings"}
    keys = {name: {f.name for f in dataclasses.fields(kind.Settings)} for name, kind in TYPES.items()}
    given = table.get("type")
    if given is not None and given not in TYPES:
        raise ConfigError(f"{path}: [{section}] type must be one of {', '.join(repr(n) for n in TYPES)}, got "
                          f"{given!r}")
    name = given or next((n for n, kind in TYPES.items() if kind.selects(table)), DEFAULT)
    theirs = {k: v for k, v in table.items() if k not in own}
    for key in theirs:
        if key in keys[name]:
            continue
        other = next((n for n, found in keys.items() if key in found), None)
        if other is None:
            raise ConfigError(_unknown(path, section, key, own | set().union(*keys.values())))
        raise ConfigError(f"{path}: [{section}] {key} is a setting of a {TYPES[other].title} teacher, and this one is "
                          f"a {TYPES[name].title} teacher ({'type = ' + repr(name) if given else TYPES[name].selected_by}"
                          f"); remove {key}, or make it a {TYPES[other].title} teacher ({TYPES[other].selected_by})")
    settings = _build(TYPES[name].Settings, theirs, path, section)
    common = _build(cls, {k: v for k, v in table.items() if k in own and k != "type"}, path, section)
    return dataclasses.replace(common, type=name, settings=settings)


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
            values[key] = _dimension(value, where, integer=h.value_type is int, log=h.log, list_means=h.list_means)
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
        elif parse == "layer_map":
            from searcher.losses import layers

            values[key] = layers.parse(value, where)
        elif parse == "threshold":
            if value != "tuned" and not (_number(value) and 0 < value < 1):
                raise ConfigError(f"{where} must be a probability in (0, 1) or \"tuned\" (chosen on the validation "
                                  f"split), got {value!r}")
            values[key] = value if value == "tuned" else float(value)
        elif parse == "verbalizers":
            if not isinstance(value, dict) or not value or not all(isinstance(v, str) and v for v in value.values()):
                raise ConfigError(f"{where} must be a table of label = \"verbalizer\" (one non-empty string per "
                                  f"label name), got {value!r}")
            values[key] = tuple((str(k), v) for k, v in value.items())
        elif parse == "skip":
            raise ConfigError(_unknown(path, section, key, [f for f in fields if fields[f].metadata.get("parse")
                                                            != "skip"]))
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
        errors = []
        for arg in args:  # the first alternative that takes the value
            try:
                return _typed(value, arg, where)
            except ConfigError as e:
                errors.append(str(e).removeprefix(f"{where} must be "))
        raise ConfigError(f"{where} must be " + " or ".join(e.split(", got ")[0] for e in errors) + f", got {value!r}")
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{where} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
        return value
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if isinstance(value, (str, int, float)):  # one value (a bool too) is a list of one
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


def _distill_section(table: Any, path: Path) -> DistillSection:
    """[distill] and its [distill.NAME] tables, one per loss that has options (searcher.losses declares them)."""
    from searcher.losses import LOSSES

    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [distill] must be a table")
    plain = {k: v for k, v in table.items() if not isinstance(v, dict)}
    section = _build(DistillSection, plain, path, "distill")
    for name in section.losses:
        if name not in LOSSES:
            close = difflib.get_close_matches(name, list(LOSSES), n=1)
            raise ConfigError(f"{path}: [distill] losses: unknown loss {name!r}; "
                              + (f"did you mean {close[0]!r}?" if close else f"losses: {', '.join(LOSSES)}"))
    settings = []
    for name, options in table.items():
        if not isinstance(options, dict):
            continue
        if name not in LOSSES:
            raise ConfigError(_unknown(path, "distill", name, list(dataclasses.asdict(DistillSection())) + list(LOSSES)))
        if name not in section.losses:
            raise ConfigError(f"{path}: [distill.{name}] sets options of the {name!r} loss, which is not in [distill] "
                              f"losses {list(section.losses)}; add it there or remove the table")
        settings.append((name, _build(LOSSES[name].Settings, options, path, f"distill.{name}")))
    for name in section.losses:  # the losses that have options get their defaults, so records say what ran
        if name not in dict(settings) and dataclasses.fields(LOSSES[name].Settings):
            settings.append((name, LOSSES[name].Settings()))
    order = {n: i for i, n in enumerate(section.losses)}
    return dataclasses.replace(section, settings=tuple(sorted(settings, key=lambda s: order[s[0]])))


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


