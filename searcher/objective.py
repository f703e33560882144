"""The Optuna objective: one trial = suggest a plan, build the student, distill, record, save.

The objective is a callable class that holds the prepared data and teacher logits, loaded once per worker
(optuna-examples style). It is the only place where the distill loop meets Optuna: it reports the task metric once
per epoch with step = epoch, so trials with different batch sizes are compared at the same epoch by the pruner.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Callable, Optional

import optuna
from optuna.trial import TrialState

from searcher import artifacts, checkpoints, distill, latency, records, runtime as rt, space, student
from searcher.errors import NonFiniteLossError, SearcherError, first_line
from searcher.prepare import Prepared

log = logging.getLogger(__name__)

ALIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


class SurplusTrial(SearcherError):
    """Another worker reached the study's n_trials first; this trial is closed without training."""


def _note_reason(trial: optuna.Trial, reason: str) -> None:
    """Record why a trial failed, unless the storage itself is what failed (the original error matters more)."""
    try:
        trial.set_user_attr(records.FAIL_REASON, reason)
    except Exception as e:  # noqa: BLE001
        log.warning("trial %d: could not record its failure reason (%s)", trial.number, first_line(e))


class Objective:
    def __init__(self, prepared: Prepared, budget: Optional[int] = None,
                 on_epoch: Optional[Callable[[optuna.Trial, distill.EpochResult], None]] = None,
                 on_start: Optional[Callable[[], None]] = None):
        self.prepared = prepared
        self.config = prepared.config
        self.budget = budget  # the study's n_trials in total, over all workers
        self.on_epoch = on_epoch  # progress display
        self.current: Optional[int] = None  # number of the trial being run (the engine reads it afterwards)
        self.on_start = on_start  # the trial exists: the engine releases its claim lock

    def __call__(self, trial: optuna.Trial):
        self.current = trial.number
        if self.on_start is not None:
            self.on_start()
        try:
            self._check_budget(trial)
            plan = space.suggest(trial, self.config)
            micro = self.prepared.runtime.micro_for(plan.hyperparams.batch_size)
            while True:
                try:
                    return self._run(trial, plan, micro)
                except Exception as e:
                    if not rt.is_oom(e) or micro <= 1:
                        raise
                    rt.empty_cache(self.prepared.runtime.device)
                    log.warning("trial %d: out of memory with micro-batch %d; retrying with %d (effective batch "
                                "%d unchanged)", trial.number, micro, micro // 2, plan.hyperparams.batch_size)
                    micro //= 2
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            _note_reason(trial, "interrupted (Ctrl-C); queued again for the next run")
            raise
        except Exception as e:
            _note_reason(trial, f"{type(e).__name__}: {first_line(e)}"[:500])
            raise
        finally:
            rt.empty_cache(self.prepared.runtime.device)

    def _check_budget(self, trial: optuna.Trial) -> None:
        if self.budget is None:
            return
        earlier = [t for t in trial.study.get_trials(deepcopy=False, states=ALIVE) if t.number < trial.number]
        if len(earlier) >= self.budget:
            raise SurplusTrial(f"the study already has its n_trials = {self.budget} trials (another worker was "
                               f"faster); nothing was trained")

    def _run(self, trial: optuna.Trial, plan: space.Plan, micro: int):
        p, c = self.prepared, self.config
        hp = plan.hyperparams
        run = dataclasses.replace(p.runtime, micro_batch_size=micro)
        started = time.perf_counter()

        teacher_model, teacher_tokenizer = (p.teacher_model() if plan.student.init != "pretrained" else (None, None))
        model, tokenizer = student.build(plan.student, p.task, teacher_model, teacher_tokenizer, seed=hp.seed)
        enc = p.encoded(tokenizer)
        accumulation = -(-hp.batch_size // micro)
        trial.set_user_attr(records.HYPERPARAMS, records.plain(dataclasses.asdict(hp)))
        trial.set_user_attr(records.STUDENT, records.plain(student.describe(model, plan.student)))
        trial.set_user_attr(records.BATCH, {"effective": hp.batch_size, "micro": micro,
                                            "accumulation": accumulation, "eval": run.eval_for(hp.batch_size)})
        trial.set_user_attr(records.RUNTIME, {"device": run.device, "amp": run.amp})

        primary = c.study.objectives[0]
        history: list[distill.EpochResult] = []

        def on_epoch(result: distill.EpochResult) -> None:
            history.append(result)
            trial.set_user_attr(records.HISTORY, records.history_columns(history))
            if self.on_epoch is not None:
                self.on_epoch(trial, result)
            if c.multi_objective or primary not in result.metrics:
                return
            trial.report(result.metrics[primary], step=result.epoch)
            if trial.should_prune():
                reason = (f"{c.study.pruner.type} pruner at epoch {result.epoch}: {primary} "
                          f"{result.metrics[primary]:.4f} was not good enough against earlier trials")
                trial.set_user_attr(records.PRUNE_REASON, reason)
                raise optuna.TrialPruned(reason)

        try:
            distill.train(model, enc["train"], p.logits.splits["train"], enc["validation"],
                          p.logits.splits["validation"], hp, run, on_epoch=on_epoch)
        except NonFiniteLossError as e:
            trial.set_user_attr(records.PRUNE_REASON, f"non-finite loss: {e}")
            artifacts.upload_epochs(trial, c)
            raise optuna.TrialPruned(str(e)) from e
        except optuna.TrialPruned:
            artifacts.upload_epochs(trial, c)
            raise
        artifacts.upload_epochs(trial, c)

        last = history[-1]
        metrics = {"loss": last.eval_loss, **last.metrics}
        trial.set_user_attr(records.METRICS, records.plain(metrics))
        if "test" in enc:
            loss, predictions = distill.predict(model, enc["test"], p.logits.splits["test"], hp, run)
            from searcher.metrics import classification_metrics

            test = {"loss": loss, **classification_metrics(predictions, enc["test"].labels)}
            trial.set_user_attr(records.TEST_METRICS, records.plain(test))

        lat = latency.measure(model, enc["validation"]) if c.train.latency else {}
        if lat:
            trial.set_user_attr(records.LATENCY, lat)

        out = checkpoints.trial_dir(c.models_dir, trial.number)
        checkpoints.save(model.to("cpu"), tokenizer, out, {
            "study": c.study.name, "trial": trial.number, "hyperparams": dataclasses.asdict(hp),
            "student": dataclasses.asdict(plan.student), "teacher": p.teacher_dir,
            "batch": {"effective": hp.batch_size, "micro": micro}, "runtime": {"device": run.device, "amp": run.amp},
        })
        size = sum(f.stat().st_size for f in out.glob("*.safetensors")) / 1e6
        trial.set_user_attr(records.SIZE, round(size, 2))
        trial.set_user_attr(records.MODEL_DIR, str(out))
        trial.set_user_attr(records.WALL_TIME, round(time.perf_counter() - started, 2))
        del model

        values = []
        for name in c.study.objectives:
            if name in metrics:
                values.append(float(metrics[name]))
            elif name == "latency_ms":
                values.append(float(lat.get("single_median", float("nan"))))
            elif name == "params_millions":
                values.append(trial.user_attrs[records.STUDENT]["params"] / 1e6)
            elif name == "size_mb":
                values.append(size)
        return values[0] if len(values) == 1 else tuple(values)
