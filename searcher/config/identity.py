"""What a study is: the resolved study file as stored data, and the settings that define its trials.

A resumed study must still be defined as it was (searcher.run.optimize compares `defining` at every start); settings in
FREE may change between runs. This module must not import torch, transformers or optuna.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Optional

from searcher import redact
from searcher.config.schema import StudyConfig, TeacherMember


def plain(obj: Any) -> Any:
    """Config values as JSON-safe data: dataclasses as dicts (search dimensions with their kind), tuples as lists."""
    if dataclasses.is_dataclass(obj):
        kind = type(obj).__name__
        data = {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.name != "raw"}
        if isinstance(obj, TeacherMember):  # a teacher kind's own keys read as the teacher's, as in the study file
            data.update(plain(data.pop("settings")) if obj.settings is not None else data.pop("settings") or {})
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


def resolved_dict(config: StudyConfig) -> dict:
    """The resolved study file as plain JSON-safe data, passwords redacted (stored with the study)."""
    data = plain(config)
    data["path"] = str(config.path)
    return redact.deep(data)  # a storage URL's password must not reach the study (optuna-dashboard serves attrs)


# Settings a study may change between runs: its budget, where things go, how they run and how results are shown.
# Everything else defines what a trial is (search space, data, teacher, student, training), and must not change
# under a study's existing trials (searcher.run.optimize compares these at every start).
# Where the data and the teacher live is free too: their content is what counts (the caller adds the data's and the
# teacher's content fingerprints), so a moved project folder is still the same study.
FREE = {
    "study": {"name", "n_trials", "timeout", "storage", "keep_best", "output_dir", "cache_dir", "heartbeat_interval",
              "grace_period", "max_retry", "sampler", "pruner", "stop", "warm_start"},
    "data": {"train", "validation", "test"},
    # content counts: "[teacher] content"; the kind follows from the keys that say what the teacher is
    "teacher": {"model", "base", "revision", "inference_batch_size", "name", "type"},
    "train": {"device", "amp", "micro_batch_size", "eval_batch_size", "latency", "num_threads", "cohort", "compile",
              "finish_in_background"},
    "distill": {"cache_budget_gb"},  # the cached and the online teacher give the same loss (to float16)
}
FREE_SECTIONS = {"path", "enqueue", "card", "hub", "export", "report"}
FREE_FINE_TUNE = {"allow_baseline"}  # [teacher.fine_tune] keys that say whether to go on, not how a teacher is made


def defining(config: StudyConfig) -> dict[str, Any]:
    """What defines the study's trials, flat and readable: {"[search] learning_rate": ..., ...}."""
    out: dict[str, Any] = {}
    for section, values in resolved_dict(config).items():
        if section in FREE_SECTIONS or not isinstance(values, dict):
            continue
        for key, value in values.items():
            if key == "fine_tune" and isinstance(value, dict):
                value = {k: v for k, v in value.items() if k not in FREE_FINE_TUNE}
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

    defaults = _defaults()
    keys = list(dict.fromkeys(list(before) + list(now)))
    # a setting added to searcher after a study was created is missing from its record: at its default it changes
    # nothing about the study's trials (their runs used what the default now names)
    return [f"{k}: {show(before.get(k))} -> {show(now.get(k))}" for k in keys if before.get(k) != now.get(k)
            and not (k not in before and k in defaults and now.get(k) == defaults[k])
            and not (k not in now and k in defaults and before.get(k) == defaults[k])]


def _defaults() -> dict[str, Any]:
    """Every section's default values, keyed as `defining` keys them (sections that need no required key)."""
    from searcher.config.schema import SECTIONS, DistillSection

    from searcher.teachers import TYPES

    out: dict[str, Any] = {}
    for section, cls in {**SECTIONS, "distill": DistillSection}.items():
        try:
            values = plain(cls())
        except TypeError:  # [study] needs a name
            continue
        out.update({f"[{section}] {k}": v for k, v in values.items()})
    for kind in TYPES.values():  # each kind's keys, as a teacher of another kind (or an older record) lacks them
        for k, v in plain(kind.Settings()).items():
            if k == "fine_tune" and isinstance(v, dict):
                v = {key: x for key, x in v.items() if key not in FREE_FINE_TUNE}
            out.setdefault(f"[teacher] {k}", v)
    return out


def distill_table(resolved: Optional[dict]) -> Optional[dict]:
    """A study's [distill] as it reads in a study file ({losses, intermediate_epochs, NAME: {options}}), from its
    resolved config; None when it distils with the logit loss alone (the default, which needs no table)."""
    if not resolved or list(resolved.get("losses") or ["logits"]) == ["logits"]:
        return None
    table = {"losses": list(resolved["losses"])}
    if resolved.get("intermediate_epochs"):
        table["intermediate_epochs"] = int(resolved["intermediate_epochs"])
    for name, options in resolved.get("settings") or []:
        table[name] = dict(options)
    return table
