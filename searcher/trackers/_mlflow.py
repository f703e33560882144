"""MLflow: one parent run per study, one nested run per trial, through `MlflowClient` (no fluent, process-wide
active run: a worker's runs never leak into a user's own `mlflow.start_run`).

Runs are found by tags, so a resumed study (another process, another day) continues its own: the parent run has
`searcher.study_uid` and `searcher.level = study`, each trial's run the same uid, `searcher.level = trial` and
`searcher.trial = N`. optuna-integration's MLflowCallback was not used: it logs once per trial, and the per-epoch
curves are what a tracker is for.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Optional

from searcher.trackers._base import Known, StudyInfo, Tracker, TrialEnd, TrialStart

# MLflow retries a failed request 7 times with a doubling backoff (minutes in all) before it raises: a tracker that
# is down must cost a trial seconds, so searcher asks for less unless the environment says otherwise
CLIENT_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
              "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
              "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}  # stdout is the leaderboard
STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
MAX_PARAM = 6000  # MLflow's limit on a param value's length


@dataclass(frozen=True)
class MLflowSettings:
    """[report.mlflow]"""

    tracking_uri: Optional[str] = field(default=None, metadata={"env": "MLFLOW_TRACKING_URI"})  # else MLflow's default
    experiment: Optional[str] = field(default=None, metadata={"env": "MLFLOW_EXPERIMENT_NAME"})  # else the study's name


class MLflowTracker(Tracker):
    name = "mlflow"
    module = "mlflow"
    extra = "mlflow"
    Settings = MLflowSettings
    secrets = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")

    def __init__(self, config) -> None:
        super().__init__(config)
        for var, value in CLIENT_ENV.items():
            os.environ.setdefault(var, value)
        self.tracking_uri = self.setting("tracking_uri")
        self.experiment = self.setting("experiment", config.study.name)
        self.client = None
        self.experiment_id: Optional[str] = None
        self.parent: Optional[str] = None
        self.uid = ""
        self.runs: dict[int, str] = {}  # trial number -> run id
        self.incomplete: set[int] = set()

    def start_study(self, study: StudyInfo) -> dict[int, Known]:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        self.uid = study.uid
        found = self.client.get_experiment_by_name(self.experiment)
        self.experiment_id = found.experiment_id if found is not None else self.client.create_experiment(
            self.experiment)
        parents = self._search(f"tags.`searcher.study_uid` = '{study.uid}' and tags.`searcher.level` = 'study'")
        if parents:
            self.parent = parents[0].info.run_id
            self.client.update_run(self.parent, status="RUNNING")
        else:
            run = self.client.create_run(self.experiment_id, run_name=study.name, tags={
                "searcher.study_uid": study.uid, "searcher.level": "study", "searcher.records.storage": study.storage,
                "mlflow.note.content": f"searcher study {study.name!r} in {study.storage}: one nested run per trial"})
            self.parent = run.info.run_id
            self._params(self.parent, study.params)
        known = {}
        for run in self._search(f"tags.`searcher.study_uid` = '{study.uid}' and tags.`searcher.level` = 'trial'"):
            number = int(run.data.tags["searcher.trial"])
            self.runs[number] = run.info.run_id
            # a run marked incomplete (the tracker failed mid-trial) is continued like one left running
            finished = run.info.status != "RUNNING" and "searcher.incomplete" not in run.data.tags
            if not finished and "searcher.incomplete" in run.data.tags:
                self.incomplete.add(number)
            last = 0 if finished else max((m.step for m in self.client.get_metric_history(run.info.run_id,
                                                                                          "train_loss")), default=0)
            known[number] = Known(finished=finished, last_step=last)
        return known

    def _search(self, where: str) -> list:
        out, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string=where, max_results=1000,
                                           page_token=token)
            out.extend(page)
            token = page.token
            if not token:
                return out

    def _params(self, run_id: str, params: dict) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:MAX_PARAM]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(run_id, params=items[i:i + 100])

    def start_trial(self, trial: TrialStart) -> None:
        run_id = self.runs.get(trial.number)
        if run_id is not None:  # left unfinished by an earlier process: continue it
            self.client.update_run(run_id, status="RUNNING")
            if trial.number in self.incomplete:
                self.client.delete_tag(run_id, "searcher.incomplete")
                self.incomplete.discard(trial.number)
            return
        tags = {"mlflow.parentRunId": self.parent, "searcher.study_uid": self.uid, "searcher.level": "trial",
                "searcher.trial": str(trial.number), **{f"searcher.{k}": v for k, v in trial.tags.items()}}
        run = self.client.create_run(self.experiment_id, run_name=trial.run_name, tags=tags)
        self.runs[trial.number] = run.info.run_id
        self._params(run.info.run_id, trial.params)

    def log_epoch(self, number: int, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.runs[number], metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def end_trial(self, end: TrialEnd) -> None:
        from mlflow.entities import Metric, RunTag

        run_id = self.runs[end.number]
        now = int(time.time() * 1000)
        tags = [RunTag("searcher.state", end.state)]
        if end.reason:
            tags.append(RunTag("searcher.reason", end.reason[:5000]))
        if end.note:
            tags.append(RunTag("searcher.note", end.note))
        self.client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in end.metrics.items()], tags=tags)
        for name, text in end.files.items():
            self.client.log_text(run_id, text, name)
        self.client.set_terminated(run_id, STATUS.get(end.state, "FAILED"))

    def abandon(self, number: int, reason: str) -> None:
        run_id = self.runs.get(number)
        if run_id is not None and self.client is not None:
            self.client.set_tag(run_id, "searcher.incomplete", reason)
            self.client.set_terminated(run_id, "FAILED")

    def close(self) -> None:
        if self.client is not None and self.parent is not None:
            self.client.set_terminated(self.parent, "FINISHED")
