"""Weights & Biases: one run per trial, grouped by the study (`group` = the study's name), in the project named by
[report.wandb] project, $WANDB_PROJECT or the study's name. The API key comes only from W&B's own login
($WANDB_API_KEY or `wandb login`); $WANDB_MODE=offline (or [report.wandb] mode) writes run folders to sync later.

The run id is the study's uid and the trial number, so a resumed study continues a trial's run (resume = "allow")
instead of starting a second one. Per-epoch metrics at step = epoch; the final figures in the run's summary; the
state as a tag and the exit code (1 for a failed trial); the per-epoch table and the card as files of the run.
W&B would also capture the console and sample the machine every few seconds: both are off, they would be
reporting's cost, not the study's. optuna-integration's WeightsAndBiasesCallback was not used: one report per
trial, no curves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from searcher.trackers._base import StudyInfo, Tracker, TrialEnd, TrialStart


@dataclass(frozen=True)
class WandbSettings:
    """[report.wandb]"""

    project: Optional[str] = field(default=None, metadata={"env": "WANDB_PROJECT"})  # else the study's name
    entity: Optional[str] = field(default=None, metadata={"env": "WANDB_ENTITY"})  # else the API key's default entity
    mode: Optional[Literal["online", "offline", "disabled"]] = field(default=None,
                                                                     metadata={"env": "WANDB_MODE"})  # else online


class WandbTracker(Tracker):
    name = "wandb"
    module = "wandb"
    extra = "wandb"
    Settings = WandbSettings
    secrets = ("WANDB_API_KEY",)

    def __init__(self, config) -> None:
        super().__init__(config)
        self.project = self.setting("project", config.study.name)
        self.entity = self.settings.entity  # None: W&B reads $WANDB_ENTITY itself
        self.mode = self.settings.mode  # None: W&B reads $WANDB_MODE itself
        self.dir = Path(os.environ.get("WANDB_DIR") or config.output_dir)  # W&B adds wandb/ under it
        self.group = config.study.name
        self.uid = ""
        self.runs: dict[int, object] = {}

    def run_id(self, number: int) -> str:
        return f"{self.uid[:12] or self.group}-trial-{number:04d}"

    def start_study(self, study: StudyInfo) -> Optional[dict]:
        self.uid, self.group = study.uid, study.name
        self.dir.mkdir(parents=True, exist_ok=True)
        return None  # offline run folders cannot say whether a run ended: the reporter's ledger does

    def start_trial(self, trial: TrialStart) -> None:
        import wandb

        run = wandb.init(project=self.project, entity=self.entity, group=self.group, name=trial.run_name,
                         id=self.run_id(trial.number), job_type="trial", mode=self.mode, dir=str(self.dir),
                         config={**trial.params, **{f"searcher.{k}": v for k, v in trial.tags.items()}},
                         tags=[trial.tags.get("kind", "sampled")], resume="allow", reinit="create_new",
                         settings=wandb.Settings(console="off", silent=True, x_disable_stats=True,
                                                 x_disable_machine_info=True, disable_git=True, save_code=False))
        self.runs[trial.number] = run

    def log_epoch(self, number: int, step: int, metrics: dict[str, float]) -> None:
        self.runs[number].log(metrics, step=step)

    def end_trial(self, end: TrialEnd) -> None:
        run = self.runs.pop(end.number)
        run.summary.update({**end.metrics, "state": end.state, "reason": end.reason, "note": end.note})
        run.tags = tuple(run.tags) + (end.state.lower(),)
        for filename, content in end.files.items():
            path = Path(run.dir) / filename  # a run's files folder is uploaded with it (now, or when synced)
            path.write_text(content, encoding="utf-8")
            run.save(str(path), base_path=run.dir, policy="now")
        run.finish(exit_code=1 if end.state == "FAIL" else 0)

    def abandon(self, number: int, reason: str) -> None:
        run = self.runs.pop(number, None)
        if run is not None:
            run.summary.update({"state": "incomplete", "reason": reason})
            run.tags = tuple(run.tags) + ("incomplete",)
            run.finish(exit_code=1)

    def close(self) -> None:
        for number in list(self.runs):
            self.runs.pop(number).finish(exit_code=1)
