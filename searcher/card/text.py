"""Text helpers for cards: names from the study file or the file system shown safely, and model sources named as a
reader can place them (a Hub id, a package, a folder name; never a path on the machine that trained).

This module imports no torch, transformers or optuna.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from searcher.config.repo_id import render as repo_id_for  # noqa: F401 - cards and pushes name repos through here

SPLIT_NAMES = {"train", "dev", "validation", "valid", "val", "test"}


# what can start a link, emphasis, HTML, a heading or a table cell; underscores inside words are literal in Markdown
MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]<>#|!~])")  # without [ ], parentheses cannot form a link


def escape(text: Optional[str]) -> Optional[str]:
    """A name from the study file or the file system, shown as plain text in Markdown (no links, no HTML)."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", text) if text else text


def fence(text: str) -> str:
    """A code fence longer than any run of backticks in `text`, so the text cannot end the block early."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def hub_id(source: Optional[str]) -> Optional[str]:
    """`source` if it looks like a Hub model id (owner/name or name), None for local paths."""
    if not source or source.startswith(("/", ".", "~", "package:")) or source.count("/") > 1 or Path(source).exists():
        return None
    return source


def display_name(source: Optional[str]) -> Optional[str]:
    """How a model source is named in a card: its Hub id, the package that ships it, or its folder's name
    (a path on the machine that trained it means nothing to a reader)."""
    if not source or hub_id(source):
        return source
    if source.startswith("package:"):
        return source[len("package:"):].split("/")[0]
    return Path(source).name


def default_dataset_name(dataset: dict) -> str:
    if dataset.get("dataset"):
        return hub_id(dataset["dataset"]) or Path(dataset["dataset"]).name
    train = Path(str((dataset.get("files") or {}).get("train", "data")))
    stem = train.name.split(".")[0]
    if stem.lower() in SPLIT_NAMES or stem.lower().startswith(tuple(SPLIT_NAMES)):
        return train.parent.name or stem
    return stem
