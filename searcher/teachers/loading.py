"""Loading a teacher and checking it fits the data: its config and label names, its head against the task, a content
hash that names its caches. The teacher objects a study builds (searcher.teachers) are made of these; their logits
are cached by searcher.teachers.logits, a base teacher is fine-tuned by searcher.teachers.finetune.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Optional

from searcher.data.loading import Task, locate
from searcher.errors import TeacherError, first_line
from searcher.train.models import load_classifier


GENERIC_LABEL = re.compile(r"^(LABEL_)?\d+$")


def locate_source(resolved: str) -> str:
    """A resolved teacher source as from_pretrained takes it: a package: source becomes its folder."""
    if resolved.startswith("package:"):
        try:
            return str(locate(resolved))
        except Exception as e:  # DataError from locate: re-raise as a teacher problem
            raise TeacherError(str(e)) from e
    return resolved


def load_config(src: str, revision: Optional[str] = None, where: str = "[teacher] model/base"):
    """A teacher's transformers config (a small download at most): used to check labels before any work."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(src, revision=revision)
    except Exception as e:
        raise TeacherError(f"cannot load teacher {src!r}: {first_line(e)}; check the Hub id (and network or "
                           f"HF_HUB_OFFLINE cache), or point {where} at a local folder") from e


def label_names(teacher_config) -> Optional[list[str]]:
    """The teacher's label names when they are real names (not LABEL_0, LABEL_1, ...)."""
    id2label = getattr(teacher_config, "id2label", None) or {}
    names = [id2label[i] for i in sorted(id2label)]
    if not names or all(GENERIC_LABEL.match(str(n)) for n in names):
        return None
    return [str(n) for n in names]


def numbered_labels(teacher_config) -> Optional[list[str]]:
    """The numbers a teacher names its outputs by ("1", "0" from id2label {0: "1", 1: "0"}, or LABEL_1, LABEL_0), in
    output order, when they are not simply 0, 1, 2, ... (None: real names, or numbers in output order)."""
    id2label = getattr(teacher_config, "id2label", None) or {}
    names = [str(id2label[i]) for i in sorted(id2label)]
    if not names or not all(GENERIC_LABEL.match(n) for n in names):
        return None
    numbers = [str(int(n.removeprefix("LABEL_"))) for n in names]
    return None if numbers == [str(i) for i in range(len(numbers))] else numbers


def check_labels(name: str, teacher_config, task: Task) -> None:
    """A fine-tuned teacher (`name`, as the study file gives it) must predict exactly the data's labels, in the same
    order, with a head of the study's task kind."""
    kind = task.kind
    problem = getattr(teacher_config, "problem_type", None)
    if problem and problem != kind.problem_type:
        raise TeacherError(f"teacher {name!r} is a {problem} model, and this study is "
                           f"{kind.title}; use a teacher fine-tuned for it, set [data] task to match, or set "
                           f"[teacher] base = ... to fine-tune one")
    n = getattr(teacher_config, "num_labels", None)
    if n != task.num_labels:
        raise TeacherError(f"teacher {name!r} predicts {n} labels but the data has "
                           f"{task.num_labels} ({', '.join(task.label_names[:6])}{'...' if task.num_labels > 6 else ''}); "
                           f"use a teacher fine-tuned on this task, or set [teacher] base = ... to fine-tune one")
    names = label_names(teacher_config)
    if not kind.named_outputs:
        return  # e.g. one score: no label names to line up
    if names is not None and set(names) != set(task.label_names):
        raise TeacherError(f"teacher {name!r} predicts the labels {names[:6]} but the data has "
                           f"{list(task.label_names)[:6]}; set [data] label_names to the teacher's names in its "
                           f"order, or use a teacher fine-tuned on this data")
    if names is not None and names != list(task.label_names):
        raise TeacherError(f"teacher {name!r} has its labels {names} in a different order than the data's "
                           f"{list(task.label_names)}; set [data] label_names = {names}")


NOT_MODEL_FILES = ("README.md", ".gitattributes")


def identity(path_or_id: str, teacher_config=None, revision: Optional[str] = None) -> str:
    """A short key that changes whenever the teacher's weights, config or any tokenizer file change: a local folder
    is hashed by the content of every file in it (not sizes and dates, which a copy or an edit can keep)."""
    p = Path(path_or_id)
    h = hashlib.sha256()
    if p.is_dir():
        for f in sorted(p.iterdir()):
            if not f.is_file() or f.name in NOT_MODEL_FILES:
                continue
            h.update(f.name.encode() + b"\0")
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    else:
        commit = getattr(teacher_config, "_commit_hash", None) if teacher_config is not None else None
        h.update(f"hub:{path_or_id}@{commit or revision or 'main'}".encode())
    return h.hexdigest()[:20]


def load_model(path_or_id: str, task: Task, revision: Optional[str] = None, new_head: bool = False):
    """The teacher as a sequence classifier (a base gets a new head sized for the task's labels)."""
    kwargs = {}
    if new_head:
        kwargs = {"num_labels": task.num_labels, "id2label": task.id2label, "label2id": task.label2id,
                  "problem_type": task.kind.problem_type,
                  "ignore_mismatched_sizes": True}  # a base with a head of another width gets a new one
    try:
        return load_classifier(path_or_id, revision=revision, **kwargs)
    except Exception as e:
        raise TeacherError(f"cannot load teacher {path_or_id!r}: {first_line(e)}; it must be a sequence "
                           f"classifier (or a base with [teacher] base = ...) with a tokenizer") from e


