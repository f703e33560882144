"""The card's facts for one trial, gathered from what the study stored (the trial's records and the study's attrs).

`context()` is a pure function (no model, no network) that fills a typed `CardContext` section by section, each by
a small builder (setfit's model card is the model), rounding every number once; the Jinja template only lays it out
and owns the fallbacks. The sampler, pruner, optimizer and loss lines are what the study and the trial recorded as
they ran (searcher.search.strategy, searcher.train.distill.recipe), never parallel constants.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

import optuna
from optuna.trial import FrozenTrial

from searcher.train import distill
from searcher import hyperparams, records, tasks
from searcher.search import strategy
from searcher.card.data import LEAD_METRICS, card_data, recipe_data
from searcher.card.facts import (BaselineFacts, CardContext, DatasetFacts, Distillation, Efficiency, FormatRow, Latency,
                                 LossLine, MetricLine, ParetoRow, PublishedBaseline, Reproduce, ResultsTable,
                                 SearchFacts, TaskFacts, TeacherFacts, Usage, MemberFacts)
from searcher.card.text import default_dataset_name, display_name, escape, fence, hub_id
from searcher.config.identity import distill_table
from searcher.errors import StudyError
from searcher.hyperparams import rounded
from searcher.tasks.metrics import title
from searcher.records.storage import (ATTR_CONFIG, ATTR_DATASET, ATTR_PRUNER, ATTR_RANGES, ATTR_SAMPLER, ATTR_STOPPED,
                              ATTR_STUDY_FILE, ATTR_STUDY_FILES, ATTR_TEACHER, ATTR_VERSIONS)

FRAMEWORKS = (("transformers", "Transformers"), ("torch", "Pytorch"), ("datasets", "Datasets"),
              ("tokenizers", "Tokenizers"), ("optuna", "Optuna"), ("searcher", "searcher"))


def _metric_lines(metrics: dict, titles: Optional[dict] = None) -> list[MetricLine]:
    """Final metrics in a fixed order: distillation loss, the plain label loss (cross-entropy; `titles` names it
    for other task kinds: MSE, BCE), then the metrics as the study computed them (built-ins first); skipped when
    missing (older records have no cross-entropy)."""
    titles = titles or {}
    order = [k for k in LEAD_METRICS if k in metrics] + [k for k in metrics if k not in LEAD_METRICS]
    return [MetricLine(titles.get(k) or title(k), rounded(float(metrics[k]))) for k in order
            if metrics[k] is not None]


def _teacher_metrics(metrics: dict) -> dict:
    # the teacher's "loss" is its cross-entropy (it is not distilled): older records call it loss
    return {("cross_entropy" if k == "loss" else k): v for k, v in metrics.items()}


def _same(a: Optional[str], b: Optional[str]) -> bool:
    return (a or "").strip().casefold() == (b or "").strip().casefold()


def _source_shown(text: Optional[str], source: Optional[str]) -> Optional[str]:
    """`text` with an imported recipe's local source path cut to its file name (a page address stays whole)."""
    if not text or not source or re.match(r"https?://", source):
        return text
    return text.replace(source, display_name(source) or source)


def _published_baseline(r: records.TrialRecord, datasets: tuple, subset: Optional[str],
                        split: str) -> list[PublishedBaseline]:
    """The source's published figures for the student's own metrics, only where the source evaluated on the same
    dataset (Hub id or card name), config/subset and split: a number on other data is no baseline."""
    source = r.enqueued_from
    if not source or not r.source_published:
        return []
    link = source if re.match(r"https?://", source) else None
    shown = escape(_source_shown(source, source))
    out = []
    for p in r.source_published:
        if not (p.get("dataset") and any(_same(p["dataset"], d) for d in datasets if d)
                and _same(p.get("config"), subset) and p.get("split") and _same(p["split"], split)):
            continue
        for name, value in p.get("metrics", {}).items():
            if name in LEAD_METRICS or r.metrics.get(name) is None or name in {b.metric for b in out}:
                continue  # a published "loss" is the source's own training loss, not searcher's distillation loss
            out.append(PublishedBaseline(name, rounded(float(value)), rounded(float(r.metrics[name])), shown, link))
    return out


def _latency(lat: Optional[dict]) -> Optional[Latency]:
    if not lat:
        return None
    return Latency(round(lat["single_median"], 2), round(lat["single_p90"], 2), round(lat["batched_median"], 1),
                   lat["batch"], round(lat["throughput_per_s"], 1))


def _speedup(student: dict, teacher: dict) -> Optional[dict]:
    if not student or not teacher:
        return None
    return {"single": round(teacher["single_median"] / student["single_median"], 1),
            "batched": round(student["throughput_per_s"] / teacher["throughput_per_s"], 1)}


FORMAT_NAMES = {"pytorch": "PyTorch fp32", "onnx": "ONNX fp32", "onnx-int8": "ONNX int8 (dynamic)"}


def _format_rows(formats: dict, teacher_latency: Optional[dict], safetensors: str,
                 primary: str = "accuracy") -> list[FormatRow]:
    rows = []
    for key, name in FORMAT_NAMES.items():
        f = formats.get(key)
        if not f or "single_median" not in f:
            continue
        file = safetensors if key == "pytorch" else formats.get("files", {}).get(key, "")
        speedup = round(f["throughput_per_s"] / teacher_latency["throughput_per_s"], 1) if teacher_latency else None
        rows.append(FormatRow(name, file, round(f["size_mb"], 1), rounded(float(f.get(primary, float("nan")))),
                              _latency(f), speedup))
    return rows


def _usage(formats: dict, static: bool = False) -> Usage:
    if static:  # Model2Vec's layout: transformers, optimum and transformers.js do not read its config.json
        return Usage(onnx_file=None, onnx_folder=None, onnx_name=None, transformers_js=False, js_dtype="fp32",
                     static=True)
    files = formats.get("files", {})
    onnx_file = files.get("onnx-int8") or files.get("onnx")
    folder, _, name = (onnx_file or "").rpartition("/")
    return Usage(onnx_file=onnx_file, onnx_folder=folder or None, onnx_name=name or None,
                 transformers_js=bool(onnx_file and formats.get("tokenizer_json")),
                 js_dtype="q8" if "onnx-int8" in files else "fp32")


def _hyperparameter_lines(r: records.TrialRecord, recipe: dict) -> list[tuple[str, str]]:
    """The Trainer card's "Training hyperparameters" list: registry lines around the batch and optimizer lines."""
    hp, batch = r.hyperparams, r.batch
    accumulating = batch.get("accumulation", 1) > 1
    return [
        *hyperparams.card_lines(hp, "lead"),
        ("train_batch_size", str(batch.get("micro", hp["batch_size"]))),
        ("eval_batch_size", str(batch.get("eval", hp["batch_size"]))),
        ("seed", str(hp["seed"])),
        *([("gradient_accumulation_steps", str(batch["accumulation"])),
           ("total_train_batch_size", str(batch["effective"]))] if accumulating else []),
        ("optimizer", recipe["optimizer"]),
        ("lr_scheduler_type", recipe["lr_scheduler_type"]),
        *hyperparams.card_lines(hp, "tail"),
        *hyperparams.card_lines(hp, "end"),
        *([("mixed_precision_training", "Native AMP")] if r.runtime.get("amp", "off") != "off" else []),
    ]


def _task_facts(kind, r: records.TrialRecord) -> TaskFacts:
    short = {"Cross-entropy": "CE"}.get(kind.label_loss_title, kind.label_loss_title)
    return TaskFacts(kind=kind.name, title=kind.title, label_loss=short, primary=title(next(iter(kind.metrics))),
                     pipeline_kwargs=kind.pipeline_kwargs, threshold=kind.threshold_text(r.threshold),
                     named=kind.named_on_card, pipeline_tag=kind.pipeline_tag)


def _results_table(history: list[dict], metric_names: list[str], label_loss: str = "CE") -> ResultsTable:
    terms = [k for k in (history[0] if history else {}) if k.startswith(records.TERM)]
    columns = [("Training Loss", "train_loss"), *[(f"Train {k[len(records.TERM):]}", k) for k in terms],
               ("Epoch", "epoch"), ("Step", "step"), ("Validation Loss", "eval_loss")]
    has_ce = bool(history) and history[0].get("cross_entropy") is not None
    if has_ce:
        columns.append((f"Validation {label_loss}", "cross_entropy"))
    columns += [(title(m), m) for m in metric_names]
    rows = []
    for row in history:
        cells = []
        for _, k in columns:
            v = row.get(k)
            cells.append(str(float(v)) if k == "epoch" else str(v) if k == "step" else
                         "-" if v is None else rounded(float(v)))
        rows.append(cells)
    header = [h for h, _ in columns]
    widths = [max([len(h)] + [len(c[i]) for c in rows]) for i, h in enumerate(header)]
    return ResultsTable(header, rows, widths, has_ce)


def _pareto_row(t: FrozenTrial, current: int) -> ParetoRow:
    s = t.user_attrs.get(records.STUDENT, {})
    return ParetoRow(t.number, t.number == current, [rounded(float(v)) for v in t.values],
                     f"L{s.get('layers')}/H{s.get('hidden')}/A{s.get('heads')}", round(s.get("params", 0) / 1e6, 1))


def _search_facts(study: optuna.Study, r: records.TrialRecord, cfg: dict, objectives: list[str]) -> SearchFacts:
    attrs = study.user_attrs
    counts = records.state_counts(study)
    s = cfg["study"]
    epochs = cfg["search"]["epochs"]
    max_epochs = int(epochs.get("high", epochs.get("value", 1)) or 1) if isinstance(epochs, dict) else int(epochs)
    return SearchFacts(
        objectives=objectives,
        directions=[d.name.lower() for d in study.directions],
        n_complete=counts["COMPLETE"], n_pruned=counts["PRUNED"], n_failed=counts["FAIL"],
        # what ran, as the study recorded it; studies from before those records: described from their config
        sampler=attrs.get(ATTR_SAMPLER) or strategy.sampler_text(s["sampler"], s["seed"]),
        pruner=attrs.get(ATTR_PRUNER) or strategy.pruner_text(s["pruner"], max_epochs),
        stopped=escape(attrs.get(ATTR_STOPPED)) or None,
        rank=records.rank_of(study, r.number),
        ranges=[{"name": k, "range": v} for k, v in attrs.get(ATTR_RANGES, {}).items()],
        pareto=[_pareto_row(t, r.number) for t in records.pareto(study)] if len(study.directions) > 1 else [],
        retry_of=r.retry_of,
        sampled_by=escape(_source_shown(r.sampled_by, r.enqueued_from)),
    )



def context(study: optuna.Study, trial: FrozenTrial, repo_id: Optional[str] = None,
            license: str = "apache-2.0", language: Optional[str] = "en",
            dataset_name: Optional[str] = None, base_model: Optional[str] = None) -> CardContext:
    """The card's facts for one complete trial, from storage alone (no model, no network)."""
    if trial.state.name != "COMPLETE":
        raise StudyError(f"trial {trial.number} is {trial.state.name.lower()}; only complete trials get a card")
    if records.is_warm_start(trial):
        raise StudyError(f"trial {trial.number} is a copy from another study ([study] warm_start), not trained by "
                         f"this study; only its own trials get a card")
    attrs = study.user_attrs
    cfg = attrs.get(ATTR_CONFIG)
    if cfg is None:
        raise StudyError(f"study {study.study_name!r} was not written by searcher (no {ATTR_CONFIG!r} attr)")
    r = records.TrialRecord.from_trial(trial)
    teacher = _trial_teacher(attrs.get(ATTR_TEACHER, {}), trial.user_attrs.get(records.TEACHER_WEIGHTS))
    dataset = attrs.get(ATTR_DATASET, {})
    s = r.student
    recipe = {**distill.recipe(), **r.recipe}  # older trials recorded no recipe: the loop has not changed since
    objectives = list(study.metric_names or cfg["study"]["objectives"])
    kind = tasks.kind(dataset.get("task") or tasks.DEFAULT,
                      None if (cfg.get("data") or {}).get("threshold") == "tuned" else
                      float((cfg.get("data") or {}).get("threshold") or 0.5))
    task = _task_facts(kind, r)
    loss_title = {"cross_entropy": kind.label_loss_title}

    teacher_source = teacher.get("model") or teacher.get("base")
    dataset_id = dataset.get("dataset")
    ds_name = dataset_name or default_dataset_name(dataset)
    split = (dataset.get("splits") or {}).get("validation") or "validation"
    shown_split = f"{dataset['holdout']} rows held out of train" if dataset.get("holdout") else split
    model_name = repo_id.split("/")[-1] if repo_id else f"{study.study_name}-trial-{r.number}"
    # base_model only names real Hub ids: a local or package path means nothing on the Hub (an override, [card]
    # base_model, says which Hub model a local copy is)
    derived = hub_id(s.get("checkpoint")) if s.get("init") == "pretrained" else \
        hub_id(teacher_source) if s.get("init") == "teacher" else \
        hub_id(s.get("base")) if s.get("family") == "static" else None  # the encoder its table was distilled from
    card_base_model = None if s.get("init") == "random" else (derived or base_model)
    if teacher.get("members"):  # an ensemble's card lists every teacher that is a Hub id, after the student's start
        listed = [card_base_model] if card_base_model else []
        card_base_model = list(dict.fromkeys(listed + teacher_hub_ids(teacher))) or None
    study_text = (attrs.get(ATTR_STUDY_FILES) or {}).get(r.study_file) or attrs.get(ATTR_STUDY_FILE)
    usage = _usage(r.formats, static=s.get("family") == "static")
    return CardContext(
        model_name=escape(model_name),
        repo_id=repo_id,
        use_id=repo_id or f"path/to/{model_name}",
        study_name=escape(study.study_name),
        trial_number=r.number,
        base_model=card_base_model,
        teacher=_teacher_facts(teacher, teacher_source, base_model, loss_title),
        dataset=DatasetFacts(
            id=dataset_id, link=hub_id(dataset_id), name=escape(ds_name), subset=escape(dataset.get("subset")),
            split=shown_split, sizes=dataset.get("sizes", {}), label_names=dataset.get("label_names", [])),
        results=_metric_lines(r.metrics, loss_title),
        test_results=_metric_lines(r.test_metrics, loss_title),
        published_baseline=_published_baseline(  # searcher's own records name local data by its train file
            r, (dataset_id, ds_name, Path(str((dataset.get("files") or {}).get("train") or "")).name),
            dataset.get("subset"), shown_split),
        distillation=_distillation(r, recipe, dataset, cfg),
        hyperparameters=_hyperparameter_lines(r, recipe),
        training_device=r.runtime.get("device"),
        amp=r.runtime.get("amp", "off"),
        results_table=_results_table(r.history, [k for k in r.metrics if k not in LEAD_METRICS], task.label_loss),
        efficiency=_efficiency(r, teacher, next(iter(kind.metrics))),
        task=task,
        usage=usage,
        search=_search_facts(study, r, cfg, objectives),
        reproduce=_reproduce(r, cfg, study_text),
        versions=[{"name": label, "version": v} for key, label in FRAMEWORKS
                  if (v := attrs.get(ATTR_VERSIONS, {}).get(key))],
        card_data=card_data(model_name=model_name, base_model=card_base_model, dataset_id=dataset_id,
                            dataset_name=ds_name, subset=dataset.get("subset"), split=split, metrics=r.metrics,
                            license=license, language=language, usage=usage, task=kind,
                            recipe=recipe_data(study.study_name, r.number, r.params, r.hyperparams, s,
                                               hub_id(s.get("checkpoint")) if s.get("init") == "pretrained"
                                               else None, distill_table(cfg.get("distill")),
                                               teachers_table(teacher))).to_yaml(),
    )


def _trial_teacher(teacher: dict, searched: Optional[dict]) -> dict:
    """The study's teacher as this trial learnt from it: with searched weights, the trial's weights and the metrics
    of the ensemble they make."""
    if not searched or not teacher.get("members"):
        return teacher
    weights = searched.get("weights") or {}
    members = [{**m, "weight": weights.get(m.get("name"), m.get("weight"))} for m in teacher["members"]]
    return {**teacher, "members": members, "metrics": {**(teacher.get("metrics") or {}),
                                                       "validation": searched.get("metrics") or {}}}


def _teacher_facts(teacher: dict, source: Optional[str], override: Optional[str],
                   titles: Optional[dict] = None) -> TeacherFacts:
    members = [_member_facts(m, titles) for m in teacher.get("members") or []]
    single_lm = _member_facts(teacher, titles) if teacher.get("type") == "causal_lm" else None
    return TeacherFacts(
        id=escape(display_name(source)) if hub_id(source) or not override else override,
        link=hub_id(source) or override,
        fine_tuned_by_searcher=bool(teacher.get("fine_tuned_by_searcher")),
        layers=teacher.get("layers"), hidden=teacher.get("hidden"), heads=teacher.get("heads"),
        params_m=round(teacher.get("params", 0) / 1e6, 1), size_mb=teacher.get("size_mb"),
        metrics=_metric_lines(_teacher_metrics((teacher.get("metrics") or {}).get("validation", {})), titles),
        latency=_latency(teacher.get("latency_ms")),
        members=members, combine=teacher.get("combine") if members else None,
        layer_wise=teacher.get("layer_wise") if members else None, causal_lm=single_lm,
        search_weights=tuple(teacher["search_weights"]) if members and teacher.get("search_weights") else None,
        baseline=_baseline_facts(teacher))


def _baseline_facts(teacher: dict) -> Optional[BaselineFacts]:
    """The teachers no better than the task's constant baseline (searcher.teachers.baseline's verdict, recorded with
    the teacher); an ensemble judged under this trial's weights when they were searched. None: all beat it."""
    from searcher.teachers.baseline import ENSEMBLE, no_better

    verdict = teacher.get("baseline")
    if not verdict:
        return None  # studies recorded before the check
    below = [(t["name"], t["value"]) for t in verdict["no_better"] if t["name"] != ENSEMBLE]
    ensemble = ((teacher.get("metrics") or {}).get("validation") or {}).get(verdict["metric"])
    if teacher.get("members") and ensemble is not None and no_better(ensemble, verdict):
        below.append((ENSEMBLE, ensemble))
    if not below:
        return None
    return BaselineFacts(verdict["metric"], rounded(float(verdict["value"])), verdict["constant"],
                         [MetricLine(escape(str(name)), rounded(float(value))) for name, value in below])


def _member_facts(m: dict, titles: Optional[dict]) -> MemberFacts:
    source = m.get("model") or m.get("base")
    return MemberFacts(
        name=escape(str(m.get("name") or display_name(source))), id=escape(display_name(source)),
        link=hub_id(source), type=m.get("type") or "classifier",
        fine_tuned_by_searcher=bool(m.get("fine_tuned_by_searcher")), seed=m.get("seed"),
        layers=m.get("layers"), hidden=m.get("hidden"), params_m=round(m.get("params", 0) / 1e6, 1),
        size_mb=m.get("size_mb"), weight=m.get("weight"),
        metrics=_metric_lines(_teacher_metrics((m.get("metrics") or {}).get("validation", {})), titles),
        prompt=m.get("prompt"), verbalizers=[(escape(k), v) for k, v in (m.get("verbalizers") or {}).items()])


def teachers_table(teacher: dict) -> Optional[dict]:
    """What taught the student, as front-matter data for `searcher import` (None: one classifier, the default)."""
    members = teacher.get("members") or ([teacher] if teacher.get("type") == "causal_lm" else [])
    if not members:
        return None
    keep = ("name", "type", "weight", "seed", "prompt", "verbalizers")
    listed = [{**{k: m[k] for k in keep if m.get(k) is not None},
               **({"model": hub_id(m.get("model")) or display_name(m.get("model"))} if m.get("model") else {}),
               **({"base": hub_id(m.get("base")) or display_name(m.get("base"))} if m.get("base") else {})}
              for m in members]
    return {"combine": teacher.get("combine") or "logits", "members": listed}


def teacher_hub_ids(teacher: dict) -> list[str]:
    """The Hub ids among a study's teachers (a base fine-tuned by searcher is named by its base)."""
    members = teacher.get("members") or [teacher]
    return [i for i in (hub_id(m.get("model") or m.get("base")) for m in members) if i]


def _loss_lines(terms: list[dict]) -> list[LossLine]:
    """The losses of a trial that trained with more than the logit loss, each with its weight and layer map."""
    if len(terms) < 2:
        return []
    out = []
    for term in terms:
        settings = {k: v for k, v in (term.get("settings") or {}).items() if k != "layer_map"}
        out.append(LossLine(
            name=term["loss"], title=term.get("title", term["loss"]),
            weight=rounded(float(term["weight"])) if term.get("weight") is not None else None,
            layers=", ".join(f"{s}<-{t}" for s, t in term["layers"]) if term.get("layers") else None,
            projection=term.get("projection"),
            settings=", ".join(f"{k} = {json.dumps(v)}" for k, v in settings.items()) or None))
    return out


def _distillation(r: records.TrialRecord, recipe: dict, dataset: dict, cfg: dict) -> Distillation:
    s = r.student
    pretrained = s.get("init") == "pretrained"
    return Distillation(
        hyperparameters=hyperparams.card_lines(r.hyperparams, "distillation"),
        losses=_loss_lines(r.loss_terms),
        intermediate_epochs=int((cfg.get("distill") or {}).get("intermediate_epochs") or 0) if r.loss_terms else 0,
        labeled_rows=r.training_rows.get("labeled"),
        teacher_labeled=[(label, r.training_rows[key]) for key, label in
                         (("transfer", "transfer text"), ("augmented", "augmented copies")) if r.training_rows.get(key)],
        teacher_labeled_total=r.teacher_labeled_rows,
        removed_overlap=(dataset.get("transfer") or {}).get("removed_overlap"),
        formula=recipe["loss"], kl_reduction=recipe["kl_reduction"],
        layers=s.get("layers"), hidden=s.get("hidden"), heads=s.get("heads"), params=s.get("params"),
        params_m=round(s.get("params", 0) / 1e6, 1), init=s.get("init"),
        checkpoint=escape(display_name(s.get("checkpoint"))) if pretrained else None,
        checkpoint_link=hub_id(s.get("checkpoint")) if pretrained else None,
        static=_static_words(s))


def _static_words(s: dict) -> Optional[str]:
    if s.get("family") != "static":
        return None
    return (f"static embeddings of dimension {s.get('static_dim')} "
            f"({'trained' if s.get('static_train_embeddings') else 'frozen'}), mean-pooled, "
            f"{'a linear head' if s.get('static_head') == 'linear' else 'a one-hidden-layer head'}; the table was "
            f"distilled from {escape(display_name(s.get('base'))) or 'the teacher'} (Model2Vec's recipe)")


def _efficiency(r: records.TrialRecord, teacher: dict, primary: str = "accuracy") -> Efficiency:
    parity = r.formats.get("onnx", {}).get("parity")
    return Efficiency(
        size_mb=round(r.size_mb, 1) if r.size_mb is not None else None,
        params_m=round(r.student.get("params", 0) / 1e6, 1),
        latency=_latency(r.latency_ms), speedup=_speedup(r.latency_ms, teacher.get("latency_ms")),
        threads=(r.latency_ms or {}).get("threads"),
        beside_training=bool((r.latency_ms or {}).get("beside_training")),
        formats=_format_rows(r.formats, teacher.get("latency_ms"), "model.safetensors", primary),
        parity={"rows": parity["rows"], "diff": f"{parity['max_abs_logit_diff']:.1e}"} if parity else None,
        export_reason=escape(r.export_reason))


def _reproduce(r: records.TrialRecord, cfg: dict, study_text: Optional[str]) -> Reproduce:
    return Reproduce(
        study_file=escape(Path(cfg.get("path", "study.toml")).name), study_text=study_text,
        fence=fence(study_text or ""),
        enqueue=[(k, repr(v) if isinstance(v, float) else json.dumps(v))
                 for k, v in sorted(hyperparams.user_params(r.params).items())])
