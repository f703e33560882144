"""Trackio (Hugging Face's local-first tracker): one run per trial in a project named after the study, grouped by
the study, stored in Trackio's local SQLite database ($TRACKIO_DIR; a Space with $TRACKIO_SPACE_ID, as Trackio
itself reads it).

Per-epoch metrics at step = epoch; the final figures at the last epoch's step; the state, reason and card as a
Markdown entry; the per-epoch table and the card as Trackio artifacts. Trackio prints to stdout when a run starts
and ends; searcher's stdout is the leaderboard, so that goes to the debug log. Automatic CPU and GPU sampling is
off: it would be reporting's cost, not the study's.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from searcher.trackers._base import StudyInfo, Tracker, TrialEnd, TrialStart

log = logging.getLogger(__name__)


def _finish(run) -> None:
    """Finish the run and forget it as Trackio's current run (else its exit hook finishes it again, and prints)."""
    from trackio import context_vars

    with _quiet():
        try:
            run.finish()
        finally:
            if context_vars.current_run.get() is run:
                context_vars.current_run.set(None)


@contextlib.contextmanager
def _quiet():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        yield
    if out.getvalue().strip():
        log.debug("trackio: %s", out.getvalue().strip())


@dataclass(frozen=True)
class TrackioSettings:
    """[report.trackio]"""

    project: Optional[str] = field(default=None, metadata={"env": "TRACKIO_PROJECT"})  # else the study's name


class TrackioTracker(Tracker):
    name = "trackio"
    module = "trackio"
    extra = "trackio"
    Settings = TrackioSettings
    secrets = ("HF_TOKEN",)  # a Space on the Hub: Hugging Face's own login

    def __init__(self, config) -> None:
        super().__init__(config)
        self.project = self.setting("project", config.study.name)
        self.group = config.study.name
        self.runs: dict[int, object] = {}
        self.names: dict[int, str] = {}
        self.last: dict[int, int] = {}

    def start_study(self, study: StudyInfo) -> Optional[dict]:
        self.group = study.name
        return None  # Trackio does not say whether a run ended: the reporter's ledger does

    def start_trial(self, trial: TrialStart) -> None:
        import trackio

        with _quiet():
            run = trackio.init(project=self.project, name=trial.run_name, group=self.group,
                               config={**trial.params, **{f"searcher.{k}": v for k, v in trial.tags.items()}},
                               resume="allow", embed=False, auto_log_cpu=False, auto_log_gpu=False)
        self.runs[trial.number] = run
        self.names[trial.number] = trial.run_name

    def log_epoch(self, number: int, step: int, metrics: dict[str, float]) -> None:
        self.runs[number].log(metrics, step=step)
        self.last[number] = step

    def end_trial(self, end: TrialEnd) -> None:
        import trackio

        run = self.runs.pop(end.number)
        step = self.last.pop(end.number, 0)
        text = f"**{end.state}**" + (f": {end.reason}" if end.reason else "") + (f"\n\n{end.note}" if end.note
                                                                                 else "")
        run.log({**end.metrics, "state": trackio.Markdown(text)}, step=step)
        name = self.names.pop(end.number)
        with tempfile.TemporaryDirectory() as d:
            for filename, content in end.files.items():
                path = Path(d) / filename
                path.write_text(content, encoding="utf-8")
                run.log_artifact(path, name=f"{name}-{Path(filename).stem.lower()}", type="searcher")
            _finish(run)  # inside: the files must still be there when the run is flushed

    def abandon(self, number: int, reason: str) -> None:
        import trackio

        run = self.runs.pop(number, None)
        if run is not None:
            run.log({"state": trackio.Markdown(f"**incomplete**: {reason}")}, step=self.last.get(number, 0))
            _finish(run)

    def close(self) -> None:
        for number in list(self.runs):
            _finish(self.runs.pop(number))
