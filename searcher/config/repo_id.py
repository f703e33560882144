"""Hub repo ids from templates (`[hub] repo_id`, `--repo-id`): `acme/{study}-L{layers}-H{hidden}`.

A template is checked when the study file is read (`check_template`), before any training: only the named fields,
no attribute or index access (`{study.nope}`, `{trial[0]}`), and format specs that cannot blow up (`{trial:04d}` is
fine, `{trial:>50000000}` would write 50 MB), so rendering it later (`render`) can only give a short string.
This module must not import torch, transformers or optuna (the study file's checks use it).
"""

from __future__ import annotations

import re
import string
from typing import Any, Optional

from searcher.errors import ConfigError

FIELDS = ("study", "trial", "layers", "hidden", "heads", "params_m")
MAX_LENGTH = 96  # the Hub's limit on a repo name; owner/name together stay well under this with sane owners
SPEC = re.compile(r"[<>=^]?[+-]?0?\d{0,2}(?:\.\d{1,2})?[dfs]?")  # width and precision of at most two digits
SAMPLE = {"layers": 2, "hidden": 128, "heads": 2, "params": 4_400_000}  # a student to try a template on


def _allowed() -> str:
    return ", ".join("{" + f + "}" for f in FIELDS)


def check_template(template: str, where: str = "repo_id template") -> None:
    """Raise ConfigError (one line, the fix) unless `template` renders safely with searcher's fields."""
    if not isinstance(template, str) or not template:
        raise ConfigError(f"{where} must be a non-empty string such as \"acme/{{study}}-L{{layers}}-H{{hidden}}\"")
    if len(template) > 2 * MAX_LENGTH:
        raise ConfigError(f"{where} is {len(template)} characters long; a Hub repo id has at most {MAX_LENGTH}")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ConfigError(f"{where} {template!r} is not a valid template ({e}); use fields like {_allowed()}") from e
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in FIELDS:
            raise ConfigError(f"{where} {template!r} uses {{{name}}}; it may use {_allowed()} (no attributes or "
                              f"indexes)")
        if conversion or (spec and not SPEC.fullmatch(spec)) or (spec and "{" in spec):
            raise ConfigError(f"{where} {template!r}: {{{name}{'!' + conversion if conversion else ''}"
                              f"{':' + spec if spec else ''}}} is not allowed; use a plain field or a short format "
                              f"such as {{trial:04d}}")
    rendered = render(template, "s" * 64, None, checked=True)
    if len(rendered.split("/")[-1]) > MAX_LENGTH:
        raise ConfigError(f"{where} {template!r} gives names longer than the Hub's {MAX_LENGTH} characters; shorten it")


def render(template: str, study_name: str, trial: Optional[Any], checked: bool = False) -> str:
    """A trial's repo id (a FrozenTrial with searcher's student record); with no trial, a sample (L2/H128, trial 0)."""
    if not checked:
        check_template(template)
    s = trial.user_attrs.get("student", {}) if trial is not None else SAMPLE
    try:
        return template.format(study=study_name, trial=trial.number if trial is not None else 0,
                               layers=s.get("layers"), hidden=s.get("hidden"), heads=s.get("heads"),
                               params_m=round((s.get("params") or 0) / 1e6, 1))
    except (KeyError, IndexError, ValueError, TypeError) as e:
        raise ConfigError(f"repo_id template {template!r} cannot be filled for this trial ({e}); use fields like "
                          f"{_allowed()}") from e
