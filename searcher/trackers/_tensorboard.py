"""TensorBoard: one run folder per trial, `<log_dir>/<study>/trial-NNNN`, written with tensorboardX (light: numpy
and protobuf; torch.utils.tensorboard would need the whole tensorboard package just to write).

Per-epoch scalars at step = epoch; the final figures at the last epoch's step; the hyperparameters and final figures
in the HParams dashboard (a `hparams` folder inside the trial's, as tensorboardX writes them); the state, reason and
card as text; the per-epoch table beside the events as epochs.csv. A resumed trial's writer adds a new event file to
the same folder, which TensorBoard reads as one run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from searcher import files
from searcher.trackers._base import StudyInfo, Tracker, TrialEnd, TrialStart

FLUSH_SECONDS = 10  # tensorboardX's default is 120: a killed worker would lose two minutes of curves


@dataclass(frozen=True)
class TensorBoardSettings:
    """[report.tensorboard]"""

    log_dir: Optional[Path] = field(default=None, metadata={"parse": "path"})  # default: <output_dir>/tensorboard


class TensorBoardTracker(Tracker):
    name = "tensorboard"
    module = "tensorboardX"
    extra = "tensorboard"
    Settings = TensorBoardSettings

    def __init__(self, config) -> None:
        super().__init__(config)
        self.root: Path = (self.settings.log_dir or config.output_dir / "tensorboard") / config.study.name
        self.writers: dict[int, object] = {}
        self.params: dict[int, dict] = {}
        self.last: dict[int, int] = {}

    def trial_dir(self, number: int) -> Path:
        return self.root / f"trial-{number:04d}"

    def start_study(self, study: StudyInfo) -> Optional[dict]:
        self.root.mkdir(parents=True, exist_ok=True)
        return None  # event files cannot say whether a run ended: the reporter's ledger does

    def start_trial(self, trial: TrialStart) -> None:
        from tensorboardX import SummaryWriter

        writer = SummaryWriter(logdir=str(self.trial_dir(trial.number)), flush_secs=FLUSH_SECONDS)
        self.writers[trial.number] = writer
        self.params[trial.number] = {k: v if isinstance(v, (int, float, str, bool)) else str(v)
                                     for k, v in trial.params.items()}
        lines = [f"- **{k}**: {v}" for k, v in trial.tags.items()]
        writer.add_text("trial", f"**{trial.run_name}**\n\n" + "\n".join(lines), 0)

    def log_epoch(self, number: int, step: int, metrics: dict[str, float]) -> None:
        writer = self.writers[number]
        for key, value in metrics.items():
            writer.add_scalar(key, value, step)
        self.last[number] = step

    def end_trial(self, end: TrialEnd) -> None:
        writer = self.writers.pop(end.number)
        step = self.last.pop(end.number, 0)
        for key, value in end.metrics.items():
            writer.add_scalar(key, value, step)
        text = f"**{end.state}**" + (f": {end.reason}" if end.reason else "") + (f"\n\n{end.note}" if end.note
                                                                                 else "")
        writer.add_text("state", text, step)
        if "README.md" in end.files:
            writer.add_text("card", end.files["README.md"], step)
        if "epochs.csv" in end.files:
            files.write_text(self.trial_dir(end.number) / "epochs.csv", end.files["epochs.csv"])
        hparams = {**self.params.pop(end.number, {}), "state": end.state}
        writer.add_hparams(hparams, {f"hparam/{k}": v for k, v in end.metrics.items()}, name="hparams",
                           global_step=step)
        writer.close()

    def abandon(self, number: int, reason: str) -> None:
        writer = self.writers.pop(number, None)
        if writer is not None:
            writer.add_text("state", f"**incomplete**: {reason}", self.last.get(number, 0))
            writer.close()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()
