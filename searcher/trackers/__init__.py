"""Experiment trackers ([report] to): every trial as a run in MLflow, TensorBoard, Trackio or Weights & Biases.

One tracker per private module, each a `Tracker` (searcher.trackers._base); `TRACKERS` is the registry by the name
the study file uses. Each is an optional extra (`pip install 'searcher[mlflow]'`); `check_installed` stops a study
that names one whose package is missing before anything is trained. searcher.trackers.report decides what is sent.
"""

from __future__ import annotations

import importlib.util

from searcher.errors import ConfigError
from searcher.trackers._base import Known, StudyInfo, Tracker, TrialEnd, TrialStart, metric_name
from searcher.trackers._mlflow import MLflowTracker
from searcher.trackers._tensorboard import TensorBoardTracker
from searcher.trackers._trackio import TrackioTracker
from searcher.trackers._wandb import WandbTracker

TRACKERS: dict[str, type[Tracker]] = {cls.name: cls for cls in (MLflowTracker, TensorBoardTracker, TrackioTracker,
                                                                WandbTracker)}


def check_installed(config) -> None:
    """Every tracker the study reports to can be imported; else one line with the pip command."""
    for name in config.report.to:
        cls = TRACKERS[name]
        if importlib.util.find_spec(cls.module) is None:
            raise ConfigError(f"{config.path}: [report] to names {name!r}, whose package is not installed; run "
                              f"pip install 'searcher[{cls.extra}]' (or remove {name!r} from [report] to)")


def reporter(config):
    """The study's Reporter, or None when [report] to is empty."""
    if not config.report.to:
        return None
    from searcher.trackers.report import Reporter

    check_installed(config)
    return Reporter(config, [TRACKERS[name](config) for name in config.report.to])


__all__ = ["TRACKERS", "Known", "StudyInfo", "Tracker", "TrialEnd", "TrialStart", "check_installed", "metric_name",
           "reporter", "MLflowTracker", "TensorBoardTracker", "TrackioTracker", "WandbTracker"]
