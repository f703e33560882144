"""The Optuna objective: one trial = suggest a plan, build the student, distill, record, save.

The objective is a callable class that holds the prepared data and teacher logits, loaded once per worker
(optuna-examples style). It is the only place where the distill loop meets Optuna: it reports the task metric once
per epoch with step = epoch, so trials with different batch sizes are compared at the same epoch by the pruner.

`run_many` trains several asked trials at once: those that share a student shape and batches train together as a
cohort (searcher.train.cohort), each still reported, pruned, recorded and saved as its own trial; the others alone.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional

import optuna
from optuna.trial import TrialState

from searcher.records import artifacts, checkpoints, latency, storage as st
from searcher.train import cohort, distill, runtime as rt, student
from searcher import files, records, timing
from searcher.search import layerwise, space
from searcher.tasks import metrics as metrics_lib
from searcher.errors import ExportFailed, NonFiniteLossError, SurplusTrial, first_line
from searcher.search.prepare import Prepared
from searcher.teachers.logits import split_metrics

log = logging.getLogger(__name__)

ALIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


@dataclasses.dataclass
class Finishing:
    """A trial whose kept student is being saved, exported and timed in the background: `future` gives its
    objective value(s), or raises the error that failed it (its reason already recorded)."""
    number: int
    future: Future


LATENCY_KEYS = ("single_median", "single_p90", "batched_median", "batched_p90", "batch", "throughput_per_s",
                "threads")


def _note_reason(trial: optuna.Trial, reason: str) -> None:
    """Record why a trial failed, unless the storage itself is what failed (the original error matters more)."""
    try:
        trial.set_user_attr(records.FAIL_REASON, reason)
    except Exception as e:  # noqa: BLE001
        log.warning("trial %d: could not record its failure reason (%s)", trial.number, first_line(e))


def _sampled_by(trial: optuna.Trial) -> str:
    """Who chose this trial's parameters, for its records and card."""
    frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
    system, user = frozen.system_attrs, frozen.user_attrs
    if "failed_trial" in system:
        return f"the parameters of trial {system['failed_trial']}, whose worker stopped (heartbeat retry)"
    if "resumes_trial" in user:
        return f"the parameters of trial {user['resumes_trial']}, which was interrupted"
    if "fixed_params" in system:
        source = user.get("enqueued_from")
        return f"queued parameters ({source})" if source else "queued parameters ([[enqueue]] in the study file)"
    return trial.study.user_attrs.get(st.ATTR_SAMPLER, "the study's sampler")


def _group_key(plan: space.Plan) -> tuple:
    """Trials that can share a cohort, told from their plans before any student is built: one student spec and
    dropout, the same batches (cohort.SHARED) and teacher targets (ensemble weights). The built members are checked
    again by Cohort (cohort.key, on the models' configs)."""
    hp = plan.hyperparams
    return (repr(plan.student), hp.hidden_dropout, *(getattr(hp, name) for name in cohort.SHARED),
            plan.teacher_weights)


class Objective:
    def __init__(self, prepared: Prepared, budget: Optional[int] = None,
                 on_epoch: Optional[Callable[[optuna.Trial, distill.EpochResult], None]] = None,
                 on_start: Optional[Callable[[], None]] = None, background: bool = False):
        self.prepared = prepared
        self.config = prepared.config
        self.budget = budget  # the study's n_trials in total, over all workers
        self.on_epoch = on_epoch  # progress display
        self.current: Optional[int] = None  # number of the trial being run (the engine reads it afterwards)
        self.on_start = on_start  # the trial exists: the engine releases its claim lock
        self.study_file = st.study_file(self.config)[0]
        # [train] finish_in_background: trials run through run_many keep their students in this thread, one at a
        # time, while the next trial trains (study.optimize's path, __call__, always finishes in place)
        self.finisher = ThreadPoolExecutor(1, thread_name_prefix="searcher-finish") if background else None

    def __call__(self, trial: optuna.Trial):
        self.current = trial.number
        if self.on_start is not None:
            self.on_start()
        try:
            self._check_budget(trial)
            return self._run_with_oom_retry(trial, space.suggest(trial, self.config))
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            _note_reason(trial, "interrupted (Ctrl-C or SIGTERM); queued again for the next run")
            raise
        except Exception as e:
            _note_reason(trial, f"{type(e).__name__}: {first_line(e)}"[:500])
            raise
        finally:
            rt.empty_cache(self.prepared.runtime.device)

    def _run_with_oom_retry(self, trial: optuna.Trial, plan: space.Plan, defer: bool = False):
        """Out of memory: run again with half the micro-batch (the effective batch, and so the result, is the same).
        Memory is freed after leaving the handler: inside it the traceback still holds the model and optimizer."""
        micro = self.prepared.runtime.micro_for(plan.hyperparams.batch_size)
        while True:
            try:
                return self._run(trial, plan, micro, defer)
            except Exception as e:
                if not rt.is_oom(e) or micro <= 1:
                    raise
            rt.empty_cache(self.prepared.runtime.device)
            log.warning("trial %d: out of memory with micro-batch %d; retrying with %d (effective batch %d "
                        "unchanged)", trial.number, micro, micro // 2, plan.hyperparams.batch_size)
            micro //= 2

    def _check_budget(self, trial: optuna.Trial) -> None:
        if self.budget is None:
            return
        earlier = [t for t in records.own_trials(trial.study, ALIVE) if t.number < trial.number]  # no copies
        if len(earlier) >= self.budget:
            raise SurplusTrial(f"the study already has its n_trials = {self.budget} trials (another worker was "
                               f"faster); nothing was trained")

    def _run(self, trial: optuna.Trial, plan: space.Plan, micro: int, defer: bool = False):
        p = self.prepared
        run = dataclasses.replace(p.runtime, micro_batch_size=micro)
        started = time.perf_counter()
        model, tokenizer = self._build(plan)
        enc = p.encoded(tokenizer)
        self._record_setup(trial, plan, model, run)
        history = self._train(trial, model, enc, plan, run)
        metrics = self._final_metrics(trial, model, enc, plan, run, history)
        return self._conclude(trial, model, tokenizer, enc, plan, run, history, metrics, started, defer)

    def _build(self, plan: space.Plan):
        with timing.phase("building"):
            return self._build_student(plan)

    def _build_student(self, plan: space.Plan):
        p = self.prepared
        if plan.student.static:  # [families] a static student: its cached table + a head (searcher.train.static)
            return p.static_student(plan.student, seed=plan.hyperparams.seed)
        teacher_model, teacher_tokenizer = (p.teacher_model() if plan.student.init != "pretrained" else (None, None))
        return student.build(plan.student, p.task, teacher_model, teacher_tokenizer, seed=plan.hyperparams.seed,
                             hidden_dropout=plan.hyperparams.hidden_dropout, head_order=p.teacher_head_order())

    def _record_setup(self, trial: optuna.Trial, plan: space.Plan, model, run: rt.Runtime) -> None:
        hp = plan.hyperparams
        trial.set_user_attr(records.HYPERPARAMS, records.plain(dataclasses.asdict(hp)))
        trial.set_user_attr(records.STUDENT, records.plain(student.describe(model, plan.student)))
        trial.set_user_attr(records.BATCH, records.batch(hp.batch_size, run))
        trial.set_user_attr(records.RUNTIME, {"device": run.device, "amp": run.amp})
        trial.set_user_attr(records.STUDY_FILE, self.study_file)
        if records.SAMPLED_BY not in trial.user_attrs:
            trial.set_user_attr(records.SAMPLED_BY, _sampled_by(trial))
        if plan.teacher_weights:  # the ensemble this trial learns from, and how good that target is itself
            p = self.prepared
            scores = split_metrics(p.target("validation", plan.teacher_weights), p.task.validation.labels, p.task.kind)
            trial.set_user_attr(records.TEACHER_WEIGHTS, records.plain({
                "weights": {m.name: round(w, 6) for m, w in zip(p.teacher.members, plan.teacher_weights)},
                "metrics": scores}))

    def _epoch_done(self, trial: optuna.Trial, plan: space.Plan, history: list, result: distill.EpochResult
                    ) -> Optional[str]:
        """Record an epoch, report the first objective (step = epoch), and say why to prune (None: go on)."""
        c, hp = self.config, plan.hyperparams
        # "accuracy@onnx-int8" is pruned on the PyTorch accuracy of each epoch: the deployed form exists only at the end
        primary = metrics_lib.split_objective(c.study.objectives[0])[0]
        history.append(result)
        trial.set_user_attr(records.HISTORY, records.history_columns(history))
        if result.peak_memory_mb is not None:  # CUDA: this trial's peak so far (pruned trials keep theirs too)
            trial.set_user_attr(records.PEAK_MEMORY, round(max(r.peak_memory_mb for r in history), 1))
        if self.on_epoch is not None:
            self.on_epoch(trial, result)
        if c.multi_objective or primary not in result.metrics or result.epoch <= c.distill.intermediate_epochs:
            return None  # TinyBERT's first stage trains no predictions: nothing to compare trials by yet
        trial.report(result.metrics[primary], step=result.epoch)
        if result.epoch >= hp.epochs:
            return None  # every epoch is paid for: pruning now would only throw the measured result away
        if trial.should_prune():
            reason = (f"{c.study.pruner.type} pruner at epoch {result.epoch}: {primary} "
                      f"{result.metrics[primary]:.4f} was not good enough against earlier trials")
            trial.set_user_attr(records.PRUNE_REASON, reason)
            return reason
        return None

    def _setup_training(self, trial: optuna.Trial, model, enc: dict, plan: space.Plan, run: rt.Runtime):
        """The trial's training rows and losses, recorded: (train rows, their teacher logits, losses)."""
        p, c, hp = self.prepared, self.config, plan.hyperparams
        train, train_logits, sizes = p.training_set(enc, hp.augment, plan.teacher_weights)
        trial.set_user_attr(records.TRAINING_ROWS, sizes)
        losses = layerwise.build_losses(c, p.layerwise.settings)
        distill.prepare_losses(losses, model, p.teacher_config, run.device)
        trial.set_user_attr(records.RECIPE, distill.recipe(losses, p.metrics.kind))
        trial.set_user_attr(records.LOSS_TERMS, records.plain([loss.describe(hp, loss.pairs_in_use)
                                                               for loss in losses]))
        return train, train_logits, losses

    def _train(self, trial: optuna.Trial, model, enc: dict, plan: space.Plan, run: rt.Runtime
               ) -> list[distill.EpochResult]:
        """Distill, reporting the first objective once per epoch (step = epoch) and pruning between epochs."""
        p, c, hp = self.prepared, self.config, plan.hyperparams
        history: list[distill.EpochResult] = []
        train, train_logits, losses = self._setup_training(trial, model, enc, plan, run)
        try:
            for result in distill.epochs(model, train, train_logits, enc["validation"],
                                         p.target("validation", plan.teacher_weights), hp, run, metrics=p.metrics,
                                         losses=losses, teacher=p.teacher_outputs(enc, hp.augment),
                                         teacher_config=p.teacher_config,
                                         intermediate_epochs=c.distill.intermediate_epochs):
                reason = self._epoch_done(trial, plan, history, result)
                if reason is not None:
                    raise optuna.TrialPruned(reason)
        except NonFiniteLossError as e:
            trial.set_user_attr(records.PRUNE_REASON, f"non-finite loss: {e}")
            artifacts.upload_epochs(trial, c)
            raise optuna.TrialPruned(str(e)) from e
        except optuna.TrialPruned:
            artifacts.upload_epochs(trial, c)
            raise
        artifacts.upload_epochs(trial, c)
        return history

    # --- several trials at once --------------------------------------------------------------------------------

    def run_many(self, trials: list[optuna.Trial]) -> dict[int, object]:
        """Run asked trials, in cohorts where they can train together; returns, by trial number, the objective
        value(s) or the exception that ended the trial (optuna.TrialPruned among them). A KeyboardInterrupt is
        raised as it comes: the caller fails and requeues the trials it has not told."""
        outcomes: dict[int, object] = {}
        plans = {}
        for trial in trials:
            self.current = trial.number
            try:
                self._check_budget(trial)
                plans[trial.number] = space.suggest(trial, self.config)
            except Exception as e:  # noqa: BLE001 - the trial's own failure, told by the caller
                outcomes[trial.number] = self._failed(trial, e)
        groups: dict = {}
        for trial in trials:
            if trial.number in plans:
                plan = plans[trial.number]
                groups.setdefault(_group_key(plan), []).append((trial, plan))
        for group in groups.values():
            outcomes.update(self._run_group(group))
        return outcomes

    def _failed(self, trial: optuna.Trial, error: Exception) -> Exception:
        if not isinstance(error, optuna.TrialPruned):
            _note_reason(trial, f"{type(error).__name__}: {first_line(error)}"[:500])
        return error

    def _run_group(self, group: list[tuple[optuna.Trial, space.Plan]]) -> dict[int, object]:
        """Trials of one shape: together (halving the cohort on out-of-memory), or alone when only one is left or
        the student cannot train in a cohort."""
        if len(group) == 1:
            return {group[0][0].number: self._alone(*group[0])}
        try:
            return self._together(group)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - out of memory halves the cohort; anything else ends its trials
            if not rt.is_oom(e):
                return {trial.number: self._failed(trial, e) for trial, _ in group}
        rt.empty_cache(self.prepared.runtime.device)
        half = len(group) // 2
        log.warning("trials %s: out of memory in a cohort of %d; training them as cohorts of %d and %d",
                    ", ".join(str(t.number) for t, _ in group), len(group), half, len(group) - half)
        return {**self._run_group(group[:half]), **self._run_group(group[half:])}

    def _alone(self, trial: optuna.Trial, plan: space.Plan) -> object:
        self.current = trial.number
        try:
            return self._run_with_oom_retry(trial, plan, defer=True)
        except KeyboardInterrupt:
            _note_reason(trial, "interrupted (Ctrl-C or SIGTERM); queued again for the next run")
            raise
        except Exception as e:  # noqa: BLE001
            return self._failed(trial, e)
        finally:
            rt.empty_cache(self.prepared.runtime.device)

    def _together(self, group: list[tuple[optuna.Trial, space.Plan]]) -> dict[int, object]:
        p, c = self.prepared, self.config
        run = p.runtime
        started = time.perf_counter()
        built = [(trial, plan, *self._build(plan)) for trial, plan in group]
        if not all(cohort.capable(model) for _, _, model, _ in built):
            return {trial.number: self._alone(trial, plan) for trial, plan in group}
        numbers = [trial.number for trial, _ in group]
        members, history = [], {}
        enc = p.encoded(built[0][3])  # one shape, one tokenizer
        for trial, plan, model, _ in built:
            self._record_setup(trial, plan, model, run)
            train, train_logits, losses = self._setup_training(trial, model, enc, plan, run)
            members.append(cohort.Member(model, plan.hyperparams, losses))
            history[trial.number] = []
        plan0 = group[0][1]
        team = cohort.Cohort(members, train, train_logits, enc["validation"],
                             p.target("validation", plan0.teacher_weights), run, p.metrics,
                             teacher=p.teacher_outputs(enc, plan0.hyperparams.augment),
                             teacher_config=p.teacher_config, intermediate_epochs=c.distill.intermediate_epochs)
        outcomes: dict[int, object] = {}
        for results in team.epochs():
            for index, result in results.items():
                trial, plan = group[index]
                self.current = trial.number
                if not history[trial.number]:  # it trained in this cohort (one that ran out of memory did not)
                    trial.set_user_attr(records.COHORT, {"size": len(group), "trials": numbers})
                if isinstance(result, NonFiniteLossError):
                    trial.set_user_attr(records.PRUNE_REASON, f"non-finite loss: {result}")
                    outcomes[trial.number] = optuna.TrialPruned(str(result))
                    continue
                reason = self._epoch_done(trial, plan, history[trial.number], result)
                if reason is not None:
                    team.stop(index)
                    outcomes[trial.number] = optuna.TrialPruned(reason)
        for index, (trial, plan, model, tokenizer) in enumerate(built):
            self.current = trial.number
            artifacts.upload_epochs(trial, c)
            if trial.number in outcomes:
                continue
            try:
                metrics = self._final_metrics(trial, model, enc, plan, run, history[trial.number])
                outcomes[trial.number] = self._conclude(trial, model, tokenizer, enc, plan, run,
                                                        history[trial.number], metrics, started, defer=True)
            except KeyboardInterrupt:
                raise
            except Exception as e:  # noqa: BLE001 - this member's failure (export, checkpoint): the others go on
                outcomes[trial.number] = self._failed(trial, e)
        return outcomes

    def _final_metrics(self, trial: optuna.Trial, model, enc: dict, plan: space.Plan, run: rt.Runtime,
                       history: list[distill.EpochResult]) -> dict:
        """The trial's final metrics (validation, and the test split's on the training device), recorded."""
        p, hp = self.prepared, plan.hyperparams
        last = history[-1]
        metrics = {"loss": last.eval_loss, "cross_entropy": last.cross_entropy, **last.metrics}
        trial.set_user_attr(records.METRICS, records.plain(metrics))
        if last.threshold is not None:  # multi-label, tuned on the validation split: the test split uses it too
            trial.set_user_attr(records.THRESHOLD, last.threshold)
        if "test" in enc:
            test = distill.evaluate(model, enc["test"], p.target("test", plan.teacher_weights), hp, run, p.metrics,
                                    threshold=last.threshold)
            trial.set_user_attr(records.TEST_METRICS, records.plain(test))
        return metrics

    def _conclude(self, trial: optuna.Trial, model, tokenizer, enc: dict, plan: space.Plan, run: rt.Runtime,
                  history: list[distill.EpochResult], metrics: dict, started: float, defer: bool):
        """Keep the student (saved, exported, timed on the CPU) and return the trial's objective value(s); with
        `defer` and a background finisher, a Finishing instead, while the caller trains the next trial."""
        model.to("cpu")  # frees the device for the next trial; the CPU work below needs it there anyway

        def keep(beside_training: bool = False):
            lat, size = self._keep(trial, model, tokenizer, enc, plan, run, history, beside_training)
            trial.set_user_attr(records.WALL_TIME, round(time.perf_counter() - started, 2))
            values = [self._objective(name, trial, metrics, lat, size) for name in self.config.study.objectives]
            return values[0] if len(values) == 1 else tuple(values)

        if not defer or self.finisher is None:
            return keep()

        def beside():
            with timing.background():
                try:
                    return keep(beside_training=True)
                except Exception as e:
                    raise self._failed(trial, e)

        return Finishing(trial.number, self.finisher.submit(beside))

    def close(self, wait: bool = True) -> None:
        """Stop the background finisher (after the work it holds, unless `wait` is False: queued work is dropped)."""
        if self.finisher is not None:
            self.finisher.shutdown(wait=wait, cancel_futures=not wait)

    def _keep(self, trial: optuna.Trial, model, tokenizer, enc: dict, plan: space.Plan, run: rt.Runtime,
              history: list[distill.EpochResult], beside_training: bool = False) -> tuple[dict, float]:
        """The saved student, its deployable forms and its CPU latency: (latency, size in MB). Latency timed in the
        background while the next trial trains says so in its record (`beside_training`), and the card with it."""
        p, c, hp = self.prepared, self.config, plan.hyperparams
        last = history[-1]
        out = checkpoints.trial_dir(c.models_dir, trial.number)
        checkpoints.save(model, tokenizer, out, {  # on the CPU already (_conclude)
            "study": c.study.name, "study_uid": trial.study.user_attrs.get(st.ATTR_UID), "trial": trial.number,
            "hyperparams": dataclasses.asdict(hp),
            "student": dataclasses.asdict(plan.student), "teacher": p.teacher_dir,
            "batch": records.batch(hp.batch_size, run), "runtime": {"device": run.device, "amp": run.amp},
        })
        size = files.folder_size(out, "*.safetensors") / 1e6
        trial.set_user_attr(records.SIZE, round(size, 2))
        trial.set_user_attr(records.MODEL_DIR, str(out))
        forms = self._export(trial, model, out, enc["validation"], last.threshold)
        lat = {k: v for k, v in forms.get("pytorch", {}).items() if k in LATENCY_KEYS}  # timed beside the exports
        if not lat and c.train.latency:
            lat = latency.measure(model, enc["validation"])
        if lat and beside_training:
            lat = {**lat, "beside_training": True}
        if lat:
            trial.set_user_attr(records.LATENCY, lat)
        return lat, size

    def _export(self, trial: optuna.Trial, model, out, validation, threshold=None) -> dict:
        """The deployable forms (ONNX fp32, int8) beside the checkpoint, measured side by side with PyTorch on the
        validation split. A failed export or parity check keeps the PyTorch student and records why."""
        formats = self.prepared.export_formats
        if not formats:
            return {}
        from searcher.records import export

        try:
            export.export(model, out, formats)
            measured = export.measure(model, out, validation, metrics_fn=self.prepared.metrics, formats=formats,
                                      threshold=threshold)
            parity = measured.get("onnx", {}).get("parity")
            if parity is not None and not parity["ok"]:
                raise export.ExportError(
                    f"the ONNX model disagrees with PyTorch (same predictions: {parity['predictions_equal']}, "
                    f"largest logit difference {parity['max_abs_logit_diff']:.2e} > {export.PARITY_TOLERANCE})")
        except export.LocalExportError as e:  # this machine's trouble, not the model's: said here, not in cards
            shutil.rmtree(Path(out) / "onnx", ignore_errors=True)
            log.warning("trial %d: no ONNX export: %s", trial.number, e)
            trial.set_user_attr(records.EXPORT_LOCAL_ERROR, str(e)[:500])
            return {}
        except Exception as e:  # noqa: BLE001 - any export failure: the trial keeps its PyTorch checkpoint
            shutil.rmtree(Path(out) / "onnx", ignore_errors=True)
            reason = f"{type(e).__name__}: {first_line(e)}"[:500]
            log.warning("trial %d: no ONNX export (%s)", trial.number, reason)
            trial.set_user_attr(records.EXPORT_REASON, reason)
            return {}
        measured["files"] = {f: str(export.FILES[f]) for f in formats}
        measured["tokenizer_json"] = (Path(out) / "tokenizer.json").is_file()  # transformers.js needs it
        trial.set_user_attr(records.FORMATS, records.plain(measured))
        return measured

    @staticmethod
    def _objective(name: str, trial: optuna.Trial, metrics: dict, lat: dict, size: float) -> float:
        metric, form = metrics_lib.split_objective(name)
        if form is not None:
            measured = trial.user_attrs.get(records.FORMATS, {}).get(form)
            if measured is None:  # the export failed: the trial cannot be ranked on its deployed form
                why = trial.user_attrs.get(records.EXPORT_REASON) or trial.user_attrs.get(records.EXPORT_LOCAL_ERROR)
                raise ExportFailed(f"objective {name!r} needs the {form} export, which failed: "
                                   f"{why or 'not exported'}")
            key = {"latency_ms": "single_median", "throughput": "throughput_per_s"}.get(metric, metric)
            return float(measured[key])
        if name in metrics:
            return float(metrics[name])
        if name == "latency_ms":
            return float(lat.get("single_median", float("nan")))
        if name == "params_millions":
            return trial.user_attrs[records.STUDENT]["params"] / 1e6
        if name == "size_mb":
            return size
        raise KeyError(f"objective {name!r} was not measured")  # config validation makes this unreachable
