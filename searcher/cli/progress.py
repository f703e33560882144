"""Progress display for `searcher optimize`: a trial bar and an epoch bar on a terminal, one line per trial always."""

from __future__ import annotations

from typing import Optional

from optuna.trial import FrozenTrial

from searcher import hyperparams
from searcher.records.trial import TrialRecord
from searcher.search.space import searched_names


def trial_line(trial: FrozenTrial, config) -> str:
    """One line per finished trial: state, metric, student, hyperparameters, time."""
    r = TrialRecord.from_trial(trial)
    hp = r.hyperparams
    parts = [f"trial {r.number:>3} {r.state.lower():<8}"]
    if r.state == "COMPLETE":
        for name, value in zip(config.study.objectives, r.values or []):
            parts.append(f"{name} {value:.4f}")
    elif r.history:
        parts.append(f"at epoch {r.history[-1]['epoch']} ({config.study.objectives[0]} "
                     f"{r.history[-1].get(config.study.objectives[0], float('nan')):.4f})")
    if r.student:
        parts.append(f"{r.student_label} {r.student.get('params', 0) / 1e6:.1f}M")
    if hp:
        parts.append(" ".join(f"{h.column or h.name} {hyperparams.cell(h, hp.get(h.name))}"
                              for h in hyperparams.columns(searched_names(config))))
    if r.teacher_labeled_rows:
        parts.append(f"rows {r.training_rows.get('labeled', 0)}+{r.teacher_labeled_rows}")
    if r.wall_time_s:
        parts.append(f"{r.wall_time_s:.0f}s")
    reason = r.prune_reason if r.state == "PRUNED" else r.fail_reason if r.state == "FAIL" else None
    if reason:
        parts.append(f"- {reason}")
    return "  ".join(parts)


class Progress:
    def __init__(self, config, enabled: bool, total: Optional[int]):
        self.config = config
        self.enabled = enabled
        self.trials = self.epochs = None
        if enabled:
            from tqdm.auto import tqdm

            self._tqdm = tqdm
            self.trials = tqdm(total=total, desc="trials", unit="trial", position=0, dynamic_ncols=True)

    def epoch_done(self, trial, result) -> None:
        if not self.enabled:
            return
        hp_epochs = trial.user_attrs.get("hyperparams", {}).get("epochs")
        if self.epochs is None:
            team = trial.user_attrs.get("cohort", {}).get("trials", [trial.number])  # a cohort's epochs interleave
            desc = f"trial {trial.number} epochs" if len(team) == 1 else f"cohort of {len(team)} trials, epochs"
            self.epochs = self._tqdm(total=hp_epochs * len(team) if hp_epochs else None, desc=desc, unit="epoch",
                                     position=1, leave=False, dynamic_ncols=True)
        primary = self.config.study.objectives[0]
        self.epochs.set_postfix({primary: f"{result.metrics.get(primary, float('nan')):.4f}",
                                 "loss": f"{result.train_loss:.3f}"})
        self.epochs.update(1)

    def trial_done(self, study, trial: FrozenTrial) -> None:
        line = trial_line(trial, self.config)
        if self.enabled:
            if self.epochs is not None:
                self.epochs.close()
                self.epochs = None
            self.trials.write(line)
            self.trials.update(1)
        else:
            print(line, flush=True)

    def close(self) -> None:
        for bar in (self.epochs, self.trials):
            if bar is not None:
                bar.close()
