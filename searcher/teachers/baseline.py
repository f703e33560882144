"""Did the teacher learn anything? Each teacher's validation score (every member of an ensemble, and the ensemble)
against the task kind's constant baseline (searcher.tasks: `TaskKind.baseline`, e.g. the majority-class rate) on the
study's objective metric.

A teacher at or below the baseline has nothing of the task to teach, and students that beat it by far would
otherwise go unexplained. `compare` gives what the study records (JSON-safe: the card and the dashboard note read
it); `line` the one warning line; `refuse` stops a study whose teacher searcher fine-tuned itself (its fine-tune
failed: the fix is its settings), unless its fine_tune says allow_baseline. This module reads metrics the teachers
already computed: it runs no model and prints nothing.
"""

from __future__ import annotations

from typing import Optional

from searcher.data.loading import Task
from searcher.errors import TeacherError
from searcher.tasks.metrics import split_objective
from searcher.teachers._base import Teacher

EPS = 1e-9  # a teacher that predicts the baseline's constant scores it exactly: "at" the baseline counts
ENSEMBLE = "the ensemble"  # how the verdict names an ensemble's own target


def metric_for(objectives, kind) -> str:
    """The metric the teachers are judged by: the study's first objective that is a built-in metric of the kind
    (a form's, e.g. accuracy@onnx-int8, by its metric), else the kind's default objective."""
    for name in objectives:
        metric = split_objective(name)[0]
        if metric in kind.metrics:
            return metric
    return kind.default_objective


def compare(teacher: Teacher, task: Task, objectives) -> dict:
    """{metric, value (the baseline's), constant (what it predicts), no_better: [{name, value, fine_tuned_by_searcher}]}
    on the validation split, for every teacher of the study that scores at or below the baseline."""
    kind = task.kind
    metric = metric_for(objectives, kind)
    verdict = {"metric": metric, "direction": kind.directions[metric],
               "value": round(kind.baseline(task.train.labels, task.validation.labels)[metric], 6),
               "constant": kind.baseline_title, "no_better": []}
    judged = list(teacher.members) + ([teacher] if len(teacher.members) > 1 else [])
    for t in judged:
        value = (t.metrics.get("validation") or {}).get(metric)
        if value is not None and no_better(value, verdict):
            verdict["no_better"].append({"name": t.name if t in teacher.members else ENSEMBLE,
                                         "value": round(value, 6),
                                         "fine_tuned_by_searcher": bool(getattr(t, "fine_tuned", False))})
    return verdict


def no_better(value: float, verdict: dict) -> bool:
    """Whether a score of the verdict's metric is at or below (for a metric to minimize: at or above) its baseline."""
    base = verdict["value"]
    return value <= base + EPS if verdict["direction"] == "maximize" else value >= base - EPS


def line(verdict: dict) -> Optional[str]:
    """One warning line naming the teachers no better than the baseline (None: every teacher beats it)."""
    if not verdict["no_better"]:
        return None
    named = ", ".join(f"{t['name']} ({t['value']:.4f})" for t in verdict["no_better"])
    return (f"teacher: no better than {verdict['constant']} ({verdict['metric']} {verdict['value']:.4f} on the "
            f"validation split): {named}; a teacher at that baseline learned nothing of the task to teach, so "
            f"students that beat it do so without it")


def refuse(teacher: Teacher, verdict: dict, listed: bool) -> None:
    """TeacherError (exit 2, before the study is created) for a teacher searcher fine-tuned itself that is no better
    than the baseline, unless its fine_tune sets allow_baseline = true: the advice is its settings. `listed`: the
    teachers come from [[teachers]] (each with its own fine_tune table), not [teacher]."""
    below = {t["name"]: t["value"] for t in verdict["no_better"]}
    for m in teacher.members:
        if m.name not in below or not getattr(m, "fine_tuned", False) or m.member.fine_tune.allow_baseline:
            continue
        ft = m.member.fine_tune
        table = f"the fine_tune table of [[teachers]] {m.name!r}" if listed else "[teacher.fine_tune]"
        raise TeacherError(
            f"teacher {m.name!r}, fine-tuned by searcher from {m.member.base} (learning_rate {ft.learning_rate:g}, "
            f"{ft.epochs} epochs), scores {verdict['metric']} {below[m.name]:.4f} on the validation split, no better "
            f"than {verdict['constant']} ({verdict['value']:.4f}): its fine-tune learned nothing; try a lower "
            f"learning_rate (2e-5 to 5e-5 suits BERT-sized bases) or more epochs in {table}, or set "
            f"allow_baseline = true there to go on with it")
