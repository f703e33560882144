"""The promises every experiment tracker keeps (searcher.trackers.Tracker), as importable test classes.

- `TrackerDeclarations` needs a `tracker_class` fixture and no client: the registry line, the pip extra, the
  [report.NAME] table (a frozen dataclass of optional values) and the secrets' environment variables.
- `TrackerPromises` runs real studies against the tracker's real store. It needs three fixtures:
  `backend` (an object with `name`, `report`, the study file's [report] table that points the tracker at a store of
  the test's own, `runs(study_name) -> {trial number: Run}`, what the store holds, read back with the tracker's
  own reader, and optionally `keeps_files = False` for a store that keeps no files by name), `study_file` (`(directory, **sections) -> Path` of a tiny study whose trials take seconds) and `cli`
  (`(*args) -> (exit code, stdout, stderr)`, searcher's CLI run in-process).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

import pytest

SECRET = "hunter2-not-for-trackers"
SOURCE = f"https://reader:{SECRET}@example.com/acme/card"  # an [[enqueue]] _source with a password in it
PRUNED_LR = 0.005  # the enqueued trial that goes non-finite at epoch 2 (pruned, with its reason)


@dataclass
class Run:
    """What a tracker holds of one trial, read back from its own store."""

    params: dict
    curves: dict  # metric -> [(step, value)]
    state: str  # COMPLETE, PRUNED, FAIL (as searcher told it), or "" when it was never ended
    text: str = ""  # every other string it holds (tags, notes, texts), for the redaction check
    files: set = field(default_factory=set)
    summary: dict = field(default_factory=dict)  # final figures where the tracker keeps them apart (W&B)

    @property
    def final(self) -> dict:
        """Each metric's last value, as a tracker's run table shows it."""
        return {**{k: v[-1][1] for k, v in self.curves.items() if v}, **self.summary}


def prune_at_epoch_2(monkeypatch, learning_rate: float = PRUNED_LR) -> None:
    """The trial with this learning rate goes non-finite in its second epoch: pruned, with its reason."""
    from searcher.errors import NonFiniteLossError
    from searcher.train import distill

    real = distill._check_finite

    def check(value, epoch, step, hp):
        if hp.learning_rate == learning_rate and epoch == 2:
            raise NonFiniteLossError(f"training loss became nan at epoch {epoch}")
        real(value, epoch, step, hp)

    monkeypatch.setattr(distill, "_check_finite", check)


class TrackerDeclarations:
    """Needs a `tracker_class` fixture: the Tracker subclass to check."""

    @pytest.fixture
    def tracker_class(self):
        raise NotImplementedError("give the test class a tracker_class fixture")

    def test_declares_its_name_package_settings_and_secrets(self, tracker_class):
        from searcher.config import ReportSection
        from searcher.trackers import TRACKERS

        cls = tracker_class
        assert TRACKERS.get(cls.name) is cls, "register it in searcher.trackers.TRACKERS"
        assert cls.module and cls.extra
        assert dataclasses.is_dataclass(cls.Settings) and cls.Settings.__dataclass_params__.frozen
        # [report] to names it and [report.NAME] is its table, from the declaration alone
        assert cls.name in typing.get_args(typing.get_args(ReportSection.__dataclass_fields__["to"].type)[0])
        assert isinstance(ReportSection().__getattribute__(cls.name), cls.Settings)
        for f in dataclasses.fields(cls.Settings):
            assert f.default is None, f"[report.{cls.name}] {f.name}: a table leaves every key out by default"
            assert all(isinstance(v, str) and v.isupper() for v in cls.environment(f.name))
        assert isinstance(cls.secrets, tuple) and all(isinstance(v, str) and v.isupper() for v in cls.secrets)


class TrackerPromises:
    """Needs `backend`, `study_file` and `cli` fixtures (see the module docstring)."""

    def _study(self, study_file, directory, backend, **sections):
        return study_file(directory, report=backend.report, train={"latency": False},
                          **{"study": {"n_trials": 3}, **sections})

    def test_every_trial_is_one_run_with_its_params_curves_and_state(self, study_file, tmp_path, cli, backend,
                                                                      monkeypatch):
        from optuna.trial import TrialState

        from searcher.config import load_study
        from searcher.records.storage import load

        prune_at_epoch_2(monkeypatch)
        path = self._study(study_file, tmp_path / "s", backend, enqueue=[
            {"_source": SOURCE, "learning_rate": 0.003}, {"learning_rate": PRUNED_LR}])
        code, out, err = cli("optimize", path, "--no-progress")
        assert code == 0, err
        assert "stopped answering" not in err  # no tracker complained
        name = load_study(path).study.name
        trials = {t.number: t for t in load(load_study(path)).trials}
        assert [t.state for t in trials.values()] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE]

        runs = backend.runs(name)
        assert sorted(runs) == [0, 1, 2]  # one run per trial
        for number, trial in trials.items():
            run = runs[number]
            assert float(run.params["learning_rate"]) == pytest.approx(
                trial.user_attrs["hyperparams"]["learning_rate"])
            assert int(float(run.params["student.layers"])) == trial.user_attrs["student"]["layers"]
            epochs = trial.user_attrs["history"]["epoch"]
            assert [s for s, _ in run.curves["accuracy"] if s in epochs] == epochs  # every epoch at its step
            assert [v for s, v in run.curves["accuracy"]][:len(epochs)] == pytest.approx(
                trial.user_attrs["history"]["accuracy"])
            assert "train_loss" in run.curves and "eval_loss" in run.curves
            assert run.state == trial.state.name
        assert runs[0].final["objective/accuracy"] == pytest.approx(trials[0].value)
        assert runs[0].final["params_millions"] == pytest.approx(trials[0].user_attrs["student"]["params"] / 1e6)
        assert [s for s, _ in runs[1].curves["accuracy"]] == [1]  # pruned in its second epoch
        assert SECRET not in runs[0].text and "reader:***@example.com" in runs[0].text  # redacted, and sent
        if getattr(backend, "keeps_files", True):  # False: the store keeps no files by name (Trackio's artifacts)
            assert {"epochs.csv", "README.md"} <= runs[0].files  # the per-epoch table and the card

        # a resumed study continues its runs: nothing is reported twice
        assert cli("optimize", path, "--no-progress")[0] == 0
        again = backend.runs(name)
        assert sorted(again) == [0, 1, 2]
        assert again[0].curves["accuracy"] == runs[0].curves["accuracy"]

    def test_a_broken_tracker_warns_once_and_never_fails_a_trial(self, study_file, tmp_path, cli, backend,
                                                                  monkeypatch):
        from optuna.trial import TrialState

        from searcher import trackers
        from searcher.config import load_study
        from searcher.records.storage import load

        calls = []

        def refuse(self, number, step, metrics):
            calls.append(number)
            raise ConnectionError(f"refused by http://user:{SECRET}@tracker.example")

        monkeypatch.setattr(trackers.TRACKERS[backend.name], "log_epoch", refuse)
        path = self._study(study_file, tmp_path / "s", backend, study={"n_trials": 2}, search={"epochs": 2})
        code, out, err = cli("optimize", path, "--no-progress")
        assert code == 0, err
        assert [t.state for t in load(load_study(path)).trials] == [TrialState.COMPLETE] * 2
        warnings = [line for line in err.splitlines() if line.startswith(f"report: {backend.name}")]
        assert len(warnings) == 1 and "ConnectionError" in warnings[0], err
        assert SECRET not in err and "user:***@tracker.example" in warnings[0]
        assert calls == [0]  # left alone after it failed: no second try, no second warning
