"""Metrics: what a trial is scored by, each declared once.

- Built in (offline, numpy): accuracy and macro-averaged F1, precision and recall (sklearn's definitions over the
  labels that occur, zero_division=0).
- Any other name in `[study] objectives` or `[metrics] report` is an `evaluate` metric, loaded once per process with
  `evaluate.load(NAME)` (a local script or folder, or a Hub id when online); `[metrics.NAME]` says how to load and
  call it (`load`, `config_name`, `key`, `kwargs`). It is recorded under NAME everywhere (records, leaderboard,
  dashboard, card), which is by default the key the module returns.
- Measured objectives are not computed from predictions: `latency_ms`, `params_millions` and `size_mb` of the student.

Adding a metric is one declaration: a study-file name (or a `[metrics.NAME]` table), or one entry in BUILTIN here.
Results are plain Python floats: numpy scalars must never reach Optuna user attrs, JSON or YAML.
This module imports evaluate only when a non-built-in metric is loaded.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Optional, Sequence

import numpy as np

from searcher import tasks
from searcher.errors import ConfigError, first_line

# measured on the student, not computed from predictions; all are minimized
MEASURED = ("latency_ms", "params_millions", "size_mb")
# what a deployed form is measured in besides the metrics (searcher.records.export.measure): "METRIC@FORMAT" objectives
FORMAT_MEASURES = {"latency_ms": "minimize", "size_mb": "minimize", "throughput": "maximize"}


def split_objective(name: str) -> tuple[str, Optional[str]]:
    """("accuracy", "onnx-int8") for "accuracy@onnx-int8"; (name, None) for a plain objective."""
    metric, _, form = name.partition("@")
    return metric, (form or None)


def natural_direction(metric: str) -> Optional[str]:
    """The direction a known metric must be optimized in (None: an evaluate metric; the study file says)."""
    for kind in tasks.KINDS.values():
        if metric in kind.directions:
            return kind.directions[metric]
    if metric in MEASURED:
        return "minimize"
    return FORMAT_MEASURES.get(metric)


def builtin_names() -> dict[str, str]:
    """Every built-in metric name and the task kind it belongs to."""
    return {name: kind.name for kind in tasks.KINDS.values() for name in kind.metrics}


# single-label classification's built-in metrics (the default task kind), for callers that know no other
BUILTIN: dict[str, Callable[[np.ndarray, np.ndarray], float]] = tasks.SingleLabel.metrics
TITLES = {"accuracy": "Accuracy", "f1": "F1", "precision": "Precision", "recall": "Recall",
          "loss": "Distillation loss", "cross_entropy": "Cross-entropy", "pearson": "Pearson",
          "spearmanr": "Spearman", "mse": "MSE", "combined_score": "Pearson-Spearman mean",
          "micro_f1": "Micro F1", "macro_f1": "Macro F1", "subset_accuracy": "Subset accuracy"}


def title(name: str) -> str:
    """How a card labels a metric (the Trainer's style: 'Accuracy', 'F1', 'Matthews Correlation')."""
    return TITLES.get(name) or name.replace("_", " ").title()


# ---------------------------------------------------------------------------------------------------------------
# The study file's side: which metrics a study computes


@dataclass(frozen=True)
class MetricSpec:
    """How to load and call one `evaluate` metric ([metrics.NAME] in the study file; all optional)."""

    name: str
    load: Optional[str] = None  # evaluate.load's argument (default: the name)
    config_name: Optional[str] = None  # e.g. evaluate.load("glue", "cola")
    key: Optional[str] = None  # which key of the result, when the module returns several (default: the name)
    kwargs: str = "{}"  # compute() keyword arguments, as JSON (kept hashable and printable)

    @property
    def compute_kwargs(self) -> dict:
        return json.loads(self.kwargs)


def check_name(name: str, where: str, kind: Optional[str] = None) -> None:
    """A metric name that is neither built in nor measured is an `evaluate` metric; catch obvious typos early, and
    a built-in metric of another task kind than the study's (`kind`, when known)."""
    owners = builtin_names()
    if kind is not None and name in owners and owners[name] != kind:
        ours = ", ".join(tasks.KINDS[kind].metrics)
        raise ConfigError(f"{where}: {name!r} is a metric of {tasks.KINDS[owners[name]].title}, and this study is "
                          f"{tasks.KINDS[kind].title} (its built-in metrics: {ours}); use one of those or fix [data] "
                          f"task")
    if name in owners or name in MEASURED or name in FORMAT_MEASURES:
        return
    close = difflib.get_close_matches(name, list(owners) + list(MEASURED), n=1, cutoff=0.8)
    if close:
        raise ConfigError(f"{where}: unknown metric {name!r}; did you mean {close[0]!r}? (other names are loaded "
                          f"with evaluate.load; add a [metrics.{name}] table to load one on purpose)")


@dataclass
class Metric:
    name: str
    compute: Callable[[np.ndarray, np.ndarray], float]
    source: str = "built-in"


@lru_cache(maxsize=None)
def _evaluate_module(load: str, config_name: Optional[str]):
    import evaluate

    return evaluate.load(load, config_name) if config_name else evaluate.load(load)


def load(spec: MetricSpec) -> Metric:
    """An `evaluate` metric, loaded once per process and probed once, so a wrong key fails before training."""
    source = spec.load or spec.name
    where = f"[metrics.{spec.name}]" if spec.load or spec.key or spec.config_name else f"metric {spec.name!r}"
    try:
        module = _evaluate_module(source, spec.config_name)
    except Exception as e:  # offline Hub ids, bad paths, broken scripts: all say the same to the user
        raise ConfigError(f"{where}: evaluate.load({source!r}) failed ({first_line(e)}); point [metrics.{spec.name}] "
                          f"load at a local metric script or folder, or go online for a Hub metric") from e
    key = spec.key or spec.name
    kwargs = spec.compute_kwargs

    def compute(predictions: np.ndarray, references: np.ndarray) -> float:
        # plain Python values: class ids, scores or label sets, as the task kind predicts them
        result = module.compute(predictions=np.asarray(predictions).tolist(),
                                references=np.asarray(references).tolist(), **kwargs)
        if not isinstance(result, dict):
            raise ConfigError(f"{where}: the module returned {type(result).__name__}, not a dict of scores")
        if key not in result:
            if len(result) == 1 and not spec.key:
                return float(next(iter(result.values())))
            raise ConfigError(f"{where}: the module returns {sorted(result)}; set [metrics.{spec.name}] key to one "
                              f"of them")
        return float(result[key])

    try:  # a probe on two labels: a module that needs other arguments says so now, not after an epoch of training
        compute(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]))
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"{where}: computing it failed ({first_line(e)}); set [metrics.{spec.name}] kwargs "
                          f"(compute() arguments) or fix the module") from e
    return Metric(spec.name, compute, source)


@dataclass
class MetricSet:
    """The metrics a study computes on every evaluation: its task kind's built-ins, then its own, in a fixed order.
    Called with a split's outputs (logits) and labels; the kind turns outputs into predictions."""

    extra: list[Metric] = field(default_factory=list)
    kind: object = None  # searcher.tasks.TaskKind (default: single-label classification)

    def __post_init__(self):
        if self.kind is None:
            self.kind = tasks.SingleLabel()

    @property
    def names(self) -> list[str]:
        return list(self.kind.metrics) + [m.name for m in self.extra]

    def __call__(self, logits: np.ndarray, references: np.ndarray, threshold: Optional[float] = None
                 ) -> dict[str, float]:
        return self.kind.scores(np.asarray(logits), np.asarray(references), self.extra, threshold)


def for_study(objectives: Sequence[str], report: Sequence[str], specs: dict[str, MetricSpec],
              kind=None) -> MetricSet:
    """The MetricSet of a study: every non-built-in objective and reported metric, loaded (and probed) once."""
    names = [split_objective(n)[0] for n in list(objectives) + list(report)]
    builtin = builtin_names()
    wanted = [n for n in names if n not in builtin and n not in MEASURED and n not in FORMAT_MEASURES]
    return MetricSet([load(specs.get(n) or MetricSpec(n)) for n in dict.fromkeys(wanted)], kind)


BUILTIN_SET = MetricSet()


def classification_metrics(predictions, references) -> dict[str, float]:
    """Single-label classification's built-in metrics of predicted class ids (teachers' scores, tests)."""
    p = np.asarray(predictions, dtype=np.int64)
    r = np.asarray(references, dtype=np.int64)
    return {name: fn(p, r) for name, fn in BUILTIN.items()}
