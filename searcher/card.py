"""Model cards, rendered after the fact from what the study stored: the trial's records and the study's attrs.

`context()` is a pure function that gathers every fact and rounds every number once into a typed `CardContext`
(setfit's SetFitModelCardData is the model); the Jinja template (templates/) only lays it out and owns the
fallbacks. The sampler, pruner, optimizer and loss lines are what the study and the trial recorded as they ran
(searcher.strategy, searcher.distill.recipe), never parallel constants. YAML front matter comes from
huggingface_hub's `ModelCardData` + `EvalResult`. Rendering uses StrictUndefined, so a typo in a template fails
loudly. Writing the card folder is searcher.folders.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional

import optuna
from optuna.trial import FrozenTrial

from searcher import distill, hyperparams, records, strategy
from searcher.config import StudyConfig
from searcher.errors import ConfigError, StudyError, first_line
from searcher.hyperparams import rounded
from searcher.metrics import title
from searcher.storage import (ATTR_CONFIG, ATTR_DATASET, ATTR_PRUNER, ATTR_RANGES, ATTR_SAMPLER, ATTR_STOPPED,
                              ATTR_STUDY_FILE, ATTR_STUDY_FILES, ATTR_TEACHER, ATTR_VERSIONS)

TEMPLATE = "modelcard.md.j2"
FRAMEWORKS = (("transformers", "Transformers"), ("torch", "Pytorch"), ("datasets", "Datasets"),
              ("tokenizers", "Tokenizers"), ("optuna", "Optuna"), ("searcher", "searcher"))
SPLIT_NAMES = {"train", "dev", "validation", "valid", "val", "test"}
# the final metrics a card lists and puts in the model-index, in this order; then the study's own metrics
LEAD_METRICS = ("loss", "cross_entropy")


def templates_dir() -> Path:
    """Ours: inside the installed package (searcher/templates), or the repository's templates/ in a checkout."""
    try:
        from importlib.resources import files

        packaged = Path(str(files("searcher.templates")))
        if (packaged / TEMPLATE).is_file():
            return packaged
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parent.parent / "templates"


# what can start a link, emphasis, HTML, a heading or a table cell; underscores inside words are literal in Markdown
MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]<>#|!~])")  # without [ ], parentheses cannot form a link


def escape(text: Optional[str]) -> Optional[str]:
    """A name from the study file or the file system, shown as plain text in Markdown (no links, no HTML)."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", text) if text else text


def fence(text: str) -> str:
    """A code fence longer than any run of backticks in `text`, so the text cannot end the block early."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def hub_id(source: Optional[str]) -> Optional[str]:
    """`source` if it looks like a Hub model id (owner/name or name), None for local paths."""
    if not source or source.startswith(("/", ".", "~", "package:")) or source.count("/") > 1 or Path(source).exists():
        return None
    return source


def display_name(source: Optional[str]) -> Optional[str]:
    """How a model source is named in a card: its Hub id, the package that ships it, or its folder's name
    (a path on the machine that trained it means nothing to a reader)."""
    if not source or hub_id(source):
        return source
    if source.startswith("package:"):
        return source[len("package:"):].split("/")[0]
    return Path(source).name


def default_dataset_name(dataset: dict) -> str:
    if dataset.get("dataset"):
        return hub_id(dataset["dataset"]) or Path(dataset["dataset"]).name
    train = Path(str((dataset.get("files") or {}).get("train", "data")))
    stem = train.name.split(".")[0]
    if stem.lower() in SPLIT_NAMES or stem.lower().startswith(tuple(SPLIT_NAMES)):
        return train.parent.name or stem
    return stem


def repo_id_for(template: str, study_name: str, trial: Optional[FrozenTrial]) -> str:
    """A trial's repo id from a template; with no trial, a sample (L2/H128, trial 0) to check the template early."""
    s = trial.user_attrs.get(records.STUDENT, {}) if trial is not None else {"layers": 2, "hidden": 128, "heads": 2,
                                                                                "params": 4_400_000}
    try:
        return template.format(study=study_name, trial=trial.number if trial is not None else 0,
                               layers=s.get("layers"), hidden=s.get("hidden"), heads=s.get("heads"),
                               params_m=round(s.get("params", 0) / 1e6, 1))
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(f"repo_id template {template!r} may use {{study}}, {{trial}}, {{layers}}, {{hidden}}, "
                          f"{{heads}}, {{params_m}}: {first_line(e)}") from e


# ---------------------------------------------------------------------------------------------------------------
# The context: every fact the template shows, typed and already rounded


@dataclass(frozen=True)
class MetricLine:
    name: str
    value: str


@dataclass(frozen=True)
class Latency:
    single_median: float
    single_p90: float
    batched_median: float
    batch: int
    throughput: float


@dataclass(frozen=True)
class TeacherFacts:
    id: Optional[str]
    link: Optional[str]
    fine_tuned_by_searcher: bool
    layers: Optional[int]
    hidden: Optional[int]
    heads: Optional[int]
    params_m: float
    size_mb: Optional[float]
    metrics: list[MetricLine]
    latency: Optional[Latency]


@dataclass(frozen=True)
class DatasetFacts:
    id: Optional[str]
    link: Optional[str]
    name: str
    subset: Optional[str]
    split: str
    sizes: dict
    label_names: list


@dataclass(frozen=True)
class Distillation:
    hyperparameters: list[tuple[str, str]]  # alpha, temperature, augmented copies (registry slot "distillation")
    labeled_rows: Optional[int]
    teacher_labeled: list[tuple[str, int]]  # ("transfer text", rows), ("augmented copies", rows) it trained on
    teacher_labeled_total: int
    removed_overlap: Optional[int]  # transfer rows dropped because they are evaluation sentences
    formula: str
    kl_reduction: str
    layers: Optional[int]
    hidden: Optional[int]
    heads: Optional[int]
    params: Optional[int]
    params_m: float
    init: Optional[str]
    checkpoint: Optional[str]
    checkpoint_link: Optional[str]


@dataclass(frozen=True)
class ResultsTable:
    header: list[str]
    rows: list[list[str]]
    widths: list[int]
    has_cross_entropy: bool


@dataclass(frozen=True)
class FormatRow:
    """One deployable form of the student, measured side by side with the others (searcher.export.measure)."""

    name: str  # "PyTorch fp32", "ONNX fp32", "ONNX int8 (dynamic)"
    file: str
    size_mb: float
    accuracy: str
    latency: Latency
    speedup: Optional[float]  # batch throughput against the teacher's (PyTorch fp32)


@dataclass(frozen=True)
class Efficiency:
    size_mb: Optional[float]
    params_m: float
    latency: Optional[Latency]
    speedup: Optional[dict]
    threads: Optional[int]
    formats: list[FormatRow]
    parity: Optional[dict]  # rows, largest logit difference of ONNX fp32 against PyTorch
    export_reason: Optional[str]


@dataclass(frozen=True)
class ParetoRow:
    trial: int
    current: bool
    scores: list[str]
    student: str
    params_m: float


@dataclass(frozen=True)
class SearchFacts:
    objectives: list[str]
    directions: list[str]
    n_complete: int
    n_pruned: int
    n_failed: int
    sampler: str
    pruner: str
    stopped: Optional[str]  # why the study ended before n_trials ([study] stop), as it recorded it
    rank: Optional[int]
    ranges: list[dict]
    pareto: list[ParetoRow]
    retry_of: Optional[int]
    sampled_by: Optional[str]


@dataclass(frozen=True)
class Usage:
    """How to load the published student: transformers always; ONNX Runtime and transformers.js when exported."""

    onnx_file: Optional[str]  # the file the ONNX snippets load (int8 when there is one): onnx_folder/onnx_name
    onnx_folder: Optional[str]
    onnx_name: Optional[str]
    transformers_js: bool  # config.json + tokenizer.json + onnx/: the layout transformers.js reads
    js_dtype: str  # "q8" selects onnx/model_quantized.onnx, "fp32" onnx/model.onnx


@dataclass(frozen=True)
class Reproduce:
    study_file: str
    study_text: Optional[str]  # the study file this trial ran under, passwords redacted
    fence: str  # a code fence the study text cannot close
    enqueue: list[tuple[str, str]]


@dataclass(frozen=True)
class PublishedBaseline:
    """A result that the source of this trial's imported recipe published on the same data and split
    (`searcher import` puts it in the [[enqueue]] entry), shown beside the student's."""

    metric: str  # the study's name for it, e.g. "accuracy"
    published: str  # rounded once, like the student's
    student: str
    source: str  # the source as a reader can place it: a page, or a file's name (never a path on this machine)
    link: Optional[str]  # the source's web page, when it has one


@dataclass(frozen=True)
class CardContext:
    """Everything a card template may use (the names are the template's variables)."""

    model_name: str
    repo_id: Optional[str]
    use_id: str
    study_name: str
    trial_number: int
    base_model: Optional[str]
    teacher: TeacherFacts
    dataset: DatasetFacts
    results: list[MetricLine]
    test_results: list[MetricLine]
    published_baseline: list[PublishedBaseline]
    distillation: Distillation
    hyperparameters: list[tuple[str, str]]
    training_device: Optional[str]
    amp: str
    results_table: ResultsTable
    efficiency: Efficiency
    usage: Usage
    search: SearchFacts
    reproduce: Reproduce
    versions: list[dict]
    card_data: str

    def variables(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _metric_lines(metrics: dict) -> list[MetricLine]:
    """Final metrics in a fixed order: distillation loss, cross-entropy, then the metrics as the study computed
    them (built-ins first); skipped when missing (older records have no cross-entropy)."""
    order = [k for k in LEAD_METRICS if k in metrics] + [k for k in metrics if k not in LEAD_METRICS]
    return [MetricLine(title(k), rounded(float(metrics[k]))) for k in order if metrics[k] is not None]


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


def _format_rows(formats: dict, teacher_latency: Optional[dict], safetensors: str) -> list[FormatRow]:
    rows = []
    for key, name in FORMAT_NAMES.items():
        f = formats.get(key)
        if not f or "single_median" not in f:
            continue
        file = safetensors if key == "pytorch" else formats.get("files", {}).get(key, "")
        speedup = round(f["throughput_per_s"] / teacher_latency["throughput_per_s"], 1) if teacher_latency else None
        rows.append(FormatRow(name, file, round(f["size_mb"], 1), rounded(float(f.get("accuracy", float("nan")))),
                              _latency(f), speedup))
    return rows


def _usage(formats: dict) -> Usage:
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


def _results_table(history: list[dict], metric_names: list[str]) -> ResultsTable:
    columns = [("Training Loss", "train_loss"), ("Epoch", "epoch"), ("Step", "step"),
               ("Validation Loss", "eval_loss")]
    has_ce = bool(history) and history[0].get("cross_entropy") is not None
    if has_ce:
        columns.append(("Validation CE", "cross_entropy"))
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
    teacher = attrs.get(ATTR_TEACHER, {})
    dataset = attrs.get(ATTR_DATASET, {})
    versions = attrs.get(ATTR_VERSIONS, {})
    s = r.student
    recipe = {**distill.recipe(), **r.recipe}  # older trials recorded no recipe: the loop has not changed since
    objectives = list(study.metric_names or cfg["study"]["objectives"])
    computed = [k for k in r.metrics if k not in LEAD_METRICS]

    teacher_source = teacher.get("model") or teacher.get("base")
    override = base_model  # [card] base_model: the Hub id of a local or packaged teacher
    teacher_id = display_name(teacher_source)
    dataset_id = dataset.get("dataset")
    ds_name = dataset_name or default_dataset_name(dataset)
    split = (dataset.get("splits") or {}).get("validation") or "validation"
    shown_split = f"{dataset['holdout']} rows held out of train" if dataset.get("holdout") else split
    model_name = repo_id.split("/")[-1] if repo_id else f"{study.study_name}-trial-{r.number}"
    # base_model only names real Hub ids: a local or package path means nothing on the Hub (an override says
    # which Hub model a local copy is)
    derived = hub_id(s.get("checkpoint")) if s.get("init") == "pretrained" else \
        hub_id(teacher_source) if s.get("init") == "teacher" else None
    base_model = None if s.get("init") == "random" else (derived or base_model)
    params_m = round(s.get("params", 0) / 1e6, 1)
    study_text = (attrs.get(ATTR_STUDY_FILES) or {}).get(r.study_file) or attrs.get(ATTR_STUDY_FILE)
    return CardContext(
        model_name=escape(model_name),
        repo_id=repo_id,
        use_id=repo_id or f"path/to/{model_name}",
        study_name=escape(study.study_name),
        trial_number=r.number,
        base_model=base_model,
        teacher=TeacherFacts(
            id=escape(teacher_id) if hub_id(teacher_source) or not override else override,
            link=hub_id(teacher_source) or override,
            fine_tuned_by_searcher=bool(teacher.get("fine_tuned_by_searcher")),
            layers=teacher.get("layers"), hidden=teacher.get("hidden"), heads=teacher.get("heads"),
            params_m=round(teacher.get("params", 0) / 1e6, 1), size_mb=teacher.get("size_mb"),
            metrics=_metric_lines(_teacher_metrics((teacher.get("metrics") or {}).get("validation", {}))),
            latency=_latency(teacher.get("latency_ms"))),
        dataset=DatasetFacts(
            id=dataset_id, link=hub_id(dataset_id), name=escape(ds_name), subset=escape(dataset.get("subset")),
            split=shown_split, sizes=dataset.get("sizes", {}), label_names=dataset.get("label_names", [])),
        results=_metric_lines(r.metrics),
        test_results=_metric_lines(r.test_metrics),
        published_baseline=_published_baseline(  # searcher's own records name local data by its train file
            r, (dataset_id, ds_name, Path(str((dataset.get("files") or {}).get("train") or "")).name),
            dataset.get("subset"), shown_split),
        distillation=Distillation(
            hyperparameters=hyperparams.card_lines(r.hyperparams, "distillation"),
            labeled_rows=r.training_rows.get("labeled"),
            teacher_labeled=[(label, r.training_rows[key]) for key, label in
                             (("transfer", "transfer text"), ("augmented", "augmented copies"))
                             if r.training_rows.get(key)],
            teacher_labeled_total=r.teacher_labeled_rows,
            removed_overlap=(dataset.get("transfer") or {}).get("removed_overlap"),
            formula=recipe["loss"], kl_reduction=recipe["kl_reduction"],
            layers=s.get("layers"), hidden=s.get("hidden"), heads=s.get("heads"), params=s.get("params"),
            params_m=params_m, init=s.get("init"),
            checkpoint=escape(display_name(s.get("checkpoint"))) if s.get("init") == "pretrained" else None,
            checkpoint_link=hub_id(s.get("checkpoint")) if s.get("init") == "pretrained" else None),
        hyperparameters=_hyperparameter_lines(r, recipe),
        training_device=r.runtime.get("device"),
        amp=r.runtime.get("amp", "off"),
        results_table=_results_table(r.history, computed),
        efficiency=Efficiency(
            size_mb=round(r.size_mb, 1) if r.size_mb is not None else None, params_m=params_m,
            latency=_latency(r.latency_ms), speedup=_speedup(r.latency_ms, teacher.get("latency_ms")),
            threads=(r.latency_ms or {}).get("threads"),
            formats=_format_rows(r.formats, teacher.get("latency_ms"), "model.safetensors"),
            parity=({"rows": r.formats["onnx"]["parity"]["rows"],
                     "diff": f"{r.formats['onnx']['parity']['max_abs_logit_diff']:.1e}"}
                    if "parity" in r.formats.get("onnx", {}) else None),
            export_reason=escape(r.export_reason)),
        usage=_usage(r.formats),
        search=_search_facts(study, r, cfg, objectives),
        reproduce=Reproduce(
            study_file=escape(Path(cfg.get("path", "study.toml")).name), study_text=study_text,
            fence=fence(study_text or ""),
            enqueue=[(k, repr(v) if isinstance(v, float) else json.dumps(v))
                     for k, v in sorted(hyperparams.user_params(r.params).items())]),
        versions=[{"name": label, "version": versions[key]} for key, label in FRAMEWORKS if key in versions],
        card_data=card_data(model_name=model_name, base_model=base_model, dataset_id=dataset_id,
                            dataset_name=ds_name, subset=dataset.get("subset"), split=split, metrics=r.metrics,
                            license=license, language=language, usage=_usage(r.formats)).to_yaml(),
    )


def card_data(model_name: str, base_model: Optional[str], dataset_id: Optional[str], dataset_name: str,
              subset: Optional[str], split: str, metrics: dict, license: str, language: Optional[str],
              usage: Optional[Usage] = None):
    """The YAML front matter as huggingface_hub data: a valid model-index with every final metric."""
    from huggingface_hub import EvalResult, ModelCardData

    dataset_type = dataset_id if hub_id(dataset_id) else dataset_name
    names = [k for k in LEAD_METRICS if metrics.get(k) is not None] + \
        [k for k in metrics if k not in LEAD_METRICS and metrics[k] is not None]
    results = [EvalResult(task_type="text-classification", task_name="Text Classification",
                          dataset_type=dataset_type, dataset_name=dataset_name, dataset_config=subset,
                          dataset_split=split, metric_type=k, metric_name=title(k), metric_value=float(metrics[k]))
               for k in names]
    return ModelCardData(
        model_name=model_name,
        base_model=base_model,
        datasets=[dataset_id] if hub_id(dataset_id) else None,
        language=language,
        license=license,
        library_name="transformers",
        pipeline_tag="text-classification",
        # what a Hub user filters by: onnx files, and transformers.js when its whole layout is there
        tags=["generated_from_searcher", "knowledge-distillation", "text-classification"]
        + (["onnx"] if usage and usage.onnx_file else []) + (["transformers.js"] if usage and usage.transformers_js
                                                              else []),
        metrics=[k for k in names if k not in LEAD_METRICS],
        eval_results=results,
    )


# ---------------------------------------------------------------------------------------------------------------
# Rendering


def render(ctx: CardContext, template: Optional[Path] = None) -> str:
    import jinja2

    path = Path(template) if template else templates_dir() / TEMPLATE
    if not path.is_file():
        raise ConfigError(f"card template {path} does not exist; fix [card] template or --template")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(path.parent)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    try:
        text = env.get_template(path.name).render(**ctx.variables())
    except jinja2.UndefinedError as e:
        raise ConfigError(f"card template {path}: {e.message}; fix the variable name (the context is "
                          f"searcher.card.CardContext)") from e
    except jinja2.TemplateSyntaxError as e:
        raise ConfigError(f"card template {path} line {e.lineno}: {e.message}") from e
    return text


def validate(text: str) -> None:
    """The card must load with ModelCard and its model-index must round-trip to eval results (offline)."""
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    try:
        card = ModelCard(text, ignore_metadata_errors=False)
        model_index_to_eval_results(card.data.to_dict()["model-index"])
    except Exception as e:
        raise StudyError(f"the rendered card's metadata is invalid ({first_line(e)}); check the card template's "
                         f"front matter") from e


def card_text(study: optuna.Study, config: StudyConfig, trial: FrozenTrial, repo_id: Optional[str] = None,
              template: Optional[Path] = None) -> str:
    ctx = context(study, trial, repo_id=repo_id, license=config.card.license, language=config.card.language,
                  dataset_name=config.card.dataset_name, base_model=config.card.base_model)
    text = render(ctx, template or config.card.template)
    validate(text)
    return text
