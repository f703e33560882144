"""Classification metrics through `evaluate`, from metric modules shipped with searcher so they work offline.

Returns plain Python floats: numpy scalars must never reach Optuna user attrs, JSON or YAML.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

MODULES = Path(__file__).parent / "metric_modules"
NAMES = ("accuracy", "f1", "precision", "recall")


@lru_cache(maxsize=None)
def _module(name: str):
    import evaluate

    return evaluate.load(str(MODULES / name))


def classification_metrics(predictions, references) -> dict[str, float]:
    """accuracy plus macro f1/precision/recall, as plain floats."""
    out: dict[str, float] = {}
    for name in NAMES:
        kwargs = {} if name == "accuracy" else {"average": "macro"}
        result = _module(name).compute(predictions=list(map(int, predictions)),
                                       references=list(map(int, references)), **kwargs)
        out[name] = float(result[name])
    return out
