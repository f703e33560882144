"""Model cards, rendered after the fact from what the study stored: the trial's records and the study's attrs.

`context()` is a pure function that gathers and rounds every number once; the Jinja template (templates/) only lays
it out and owns the fallbacks. YAML front matter comes from huggingface_hub's `ModelCardData` + `EvalResult`, never
from hand-typed YAML. Rendering uses StrictUndefined, so a typo in a template fails loudly.
`export()` writes the folder that `searcher push` uploads: README.md, the student, its tokenizer, searcher_trial.json.
"""

from __future__ import annotations

import json
import shutil
from importlib import metadata
from pathlib import Path
from typing import Optional

import optuna
from optuna.trial import FrozenTrial

from searcher import records
from searcher.config import StudyConfig
from searcher.errors import ConfigError, StudyError, first_line
from searcher.storage import ATTR_CONFIG, ATTR_DATASET, ATTR_RANGES, ATTR_STUDY_FILE, ATTR_TEACHER, ATTR_VERSIONS

TEMPLATE = "modelcard.md.j2"
OPTIMIZER = "Adam with betas=(0.9,0.999) and epsilon=1e-08"
LOSS_FORMULA = "alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))"
METRIC_NAMES = {"loss": "Loss", "accuracy": "Accuracy", "f1": "F1", "precision": "Precision", "recall": "Recall"}
FRAMEWORKS = (("transformers", "Transformers"), ("torch", "Pytorch"), ("datasets", "Datasets"),
              ("tokenizers", "Tokenizers"), ("optuna", "Optuna"), ("searcher", "searcher"))
MODEL_FILES_EXCLUDED = {"searcher_run.json"}


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


def maybe_round(value, decimals: int = 4) -> str:
    """How transformers' generated cards print numbers: at most `decimals` decimals, shorter ones as they are."""
    if isinstance(value, float) and "." in str(value) and len(str(value).split(".")[1]) > decimals:
        return f"{value:.{decimals}f}"
    return str(value)


def hub_id(source: Optional[str]) -> Optional[str]:
    """`source` if it looks like a Hub model id (owner/name or name), None for local paths."""
    if not source or source.startswith(("/", ".", "~")) or source.count("/") > 1 or Path(source).exists():
        return None
    return source


SPLIT_NAMES = {"train", "dev", "validation", "valid", "val", "test"}


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


def repo_id_for(template: str, study_name: str, trial: FrozenTrial) -> str:
    s = trial.user_attrs.get(records.STUDENT, {})
    try:
        return template.format(study=study_name, trial=trial.number, layers=s.get("layers"), hidden=s.get("hidden"),
                               heads=s.get("heads"), params_m=round(s.get("params", 0) / 1e6, 1))
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(f"repo_id template {template!r} may use {{study}}, {{trial}}, {{layers}}, {{hidden}}, "
                          f"{{heads}}, {{params_m}}: {first_line(e)}") from e


# ---------------------------------------------------------------------------------------------------------------
# Context: everything the template shows, already rounded


def _latency_row(lat: dict) -> dict:
    return {"single_median": round(lat["single_median"], 2), "single_p90": round(lat["single_p90"], 2),
            "batched_median": round(lat["batched_median"], 1), "batch": lat["batch"],
            "throughput": round(lat["throughput_per_s"], 1)}


def _speedup(student: dict, teacher: dict) -> Optional[dict]:
    if not student or not teacher:
        return None
    return {"single": round(teacher["single_median"] / student["single_median"], 1),
            "batched": round(student["throughput_per_s"] / teacher["throughput_per_s"], 1)}


def _sampler_text(config: dict) -> str:
    s = config["study"]
    if s["sampler"] == "random":
        return f"RandomSampler, seeded per trial from the study seed {s['seed']}"
    return (f"TPESampler(multivariate=True, group=True, constant_liar=True), seeded per trial from the study seed "
            f"{s['seed']}")


def _pruner_text(config: dict) -> str:
    p = config["study"]["pruner"]
    if p["type"] == "none":
        return "none"
    if p["type"] == "hyperband":
        return f"HyperbandPruner(min_resource=1 epoch, reduction_factor={p['reduction_factor']})"
    return f"MedianPruner(n_startup_trials={p['n_startup_trials']}, n_warmup_steps={p['n_warmup_steps']}), per epoch"


def context(study: optuna.Study, trial: FrozenTrial, repo_id: Optional[str] = None,
            license: str = "apache-2.0", language: Optional[str] = "en", dataset_name: Optional[str] = None) -> dict:
    """The card's facts for one complete trial, from storage alone (no model, no network)."""
    if trial.state.name != "COMPLETE":
        raise StudyError(f"trial {trial.number} is {trial.state.name.lower()}; only complete trials get a card")
    attrs = study.user_attrs
    cfg = attrs.get(ATTR_CONFIG)
    if cfg is None:
        raise StudyError(f"study {study.study_name!r} was not written by searcher (no {ATTR_CONFIG!r} attr)")
    r = records.TrialRecord.from_trial(trial)
    teacher = attrs.get(ATTR_TEACHER, {})
    dataset = attrs.get(ATTR_DATASET, {})
    versions = attrs.get(ATTR_VERSIONS, {})
    hp, s, batch = r.hyperparams, r.student, r.batch
    objectives = list(study.metric_names or cfg["study"]["objectives"])

    teacher_id = display_name(teacher.get("model") or teacher.get("base"))
    dataset_id = dataset.get("dataset")
    ds_name = dataset_name or default_dataset_name(dataset)
    subset = dataset.get("subset")
    eval_split = (dataset.get("splits") or {}).get("validation") or "validation"
    if dataset.get("holdout"):
        eval_split = f"{dataset['holdout']} rows held out of train"
    model_name = repo_id.split("/")[-1] if repo_id else f"{study.study_name}-trial-{r.number}"
    base_model = hub_id(s.get("checkpoint")) if s.get("init") == "pretrained" else \
        hub_id(teacher_id) if s.get("init") == "teacher" else None

    counts = records.state_counts(study)
    ranked = records.ranked(study)
    pareto = records.pareto(study) if len(study.directions) > 1 else []
    accumulating = batch.get("accumulation", 1) > 1
    amp = r.runtime.get("amp", "off")

    def metric_lines(metrics: dict) -> list[dict]:
        return [{"name": METRIC_NAMES.get(k, k), "value": maybe_round(float(metrics[k]))}
                for k in METRIC_NAMES if k in metrics]

    student_lat = _latency_row(r.latency_ms) if r.latency_ms else None
    teacher_lat = _latency_row(teacher["latency_ms"]) if teacher.get("latency_ms") else None
    teacher_metrics = (teacher.get("metrics") or {}).get("validation", {})
    return {
        "model_name": model_name,
        "repo_id": repo_id,
        "use_id": repo_id or f"path/to/{model_name}",
        "study_name": study.study_name,
        "trial_number": r.number,
        "base_model": base_model,
        "teacher": {
            "id": teacher_id,
            "link": hub_id(teacher_id),
            "fine_tuned_by_searcher": bool(teacher.get("fine_tuned_by_searcher")),
            "layers": teacher.get("layers"), "hidden": teacher.get("hidden"), "heads": teacher.get("heads"),
            "params_m": round(teacher.get("params", 0) / 1e6, 1),
            "size_mb": teacher.get("size_mb"),
            "metrics": metric_lines(teacher_metrics),
            "latency": teacher_lat,
        },
        "dataset": {"id": dataset_id, "link": hub_id(dataset_id), "name": ds_name, "subset": subset,
                    "split": eval_split, "sizes": dataset.get("sizes", {}),
                    "label_names": dataset.get("label_names", [])},
        "results": metric_lines(r.metrics),
        "test_results": metric_lines(r.test_metrics),
        "distillation": {
            "alpha": maybe_round(float(hp["alpha"])),
            "temperature": maybe_round(float(hp["temperature"])),
            "formula": LOSS_FORMULA,
            "layers": s.get("layers"), "hidden": s.get("hidden"), "heads": s.get("heads"),
            "params": s.get("params"), "params_m": round(s.get("params", 0) / 1e6, 1),
            "init": s.get("init"),
            "checkpoint": s.get("checkpoint") if s.get("init") == "pretrained" else None,
            "checkpoint_link": hub_id(s.get("checkpoint")) if s.get("init") == "pretrained" else None,
        },
        "hyperparameters": [
            ("learning_rate", repr(float(hp["learning_rate"]))),
            ("train_batch_size", str(batch.get("micro", hp["batch_size"]))),
            ("eval_batch_size", str(batch.get("eval", hp["batch_size"]))),
            ("seed", str(hp["seed"])),
            *([("gradient_accumulation_steps", str(batch["accumulation"])),
               ("total_train_batch_size", str(batch["effective"]))] if accumulating else []),
            ("optimizer", OPTIMIZER),
            ("lr_scheduler_type", "linear"),
            *([("lr_scheduler_warmup_ratio", maybe_round(float(hp["warmup_ratio"])))] if hp.get("warmup_ratio") else []),
            *([("weight_decay", maybe_round(float(hp["weight_decay"])))] if hp.get("weight_decay") else []),
            ("num_epochs", str(hp["epochs"])),
            *([("mixed_precision_training", "Native AMP")] if amp != "off" else []),
        ],
        "training_device": r.runtime.get("device"),
        "amp": amp,
        "results_table": _results_table(r.history),
        "efficiency": {
            "size_mb": round(r.size_mb, 1) if r.size_mb is not None else None,
            "params_m": round(s.get("params", 0) / 1e6, 1),
            "latency": student_lat,
            "speedup": _speedup(r.latency_ms, teacher.get("latency_ms")),
            "threads": (r.latency_ms or {}).get("threads"),
        },
        "search": {
            "objectives": objectives,
            "directions": [d.name.lower() for d in study.directions],
            "n_complete": counts["COMPLETE"], "n_pruned": counts["PRUNED"], "n_failed": counts["FAIL"],
            "sampler": _sampler_text(cfg),
            "pruner": _pruner_text(cfg),
            "rank": next((i for i, t in enumerate(ranked, 1) if t.number == r.number), None),
            "ranges": [{"name": k, "range": v} for k, v in attrs.get(ATTR_RANGES, {}).items()],
            "pareto": [_pareto_row(t, objectives, r.number) for t in pareto],
            "retry_of": r.retry_of,
        },
        "reproduce": {
            "study_file": Path(cfg.get("path", "study.toml")).name,
            "study_text": attrs.get(ATTR_STUDY_FILE),
            "enqueue": [(k, repr(v) if isinstance(v, float) else json.dumps(v)) for k, v in sorted(r.params.items())],
        },
        "versions": [{"name": label, "version": versions[key]} for key, label in FRAMEWORKS if key in versions],
        "card_data": card_data(model_name=model_name, base_model=base_model, dataset_id=dataset_id,
                               dataset_name=ds_name, subset=subset, split=(dataset.get("splits") or {}).get(
                                   "validation") or "validation", metrics=r.metrics, license=license,
                               language=language).to_yaml(),
    }


def _results_table(history: list[dict]) -> dict:
    header = ["Training Loss", "Epoch", "Step", "Validation Loss", "Accuracy", "F1", "Precision", "Recall"]
    keys = ["train_loss", "epoch", "step", "eval_loss", "accuracy", "f1", "precision", "recall"]
    rows = []
    for row in history:
        cells = []
        for k in keys:
            v = row.get(k)
            cells.append(str(float(v)) if k == "epoch" else str(v) if k == "step" else maybe_round(float(v)))
        rows.append(cells)
    widths = [max([len(h)] + [len(c[i]) for c in rows]) for i, h in enumerate(header)]
    return {"header": header, "rows": rows, "widths": widths}


def _pareto_row(t: FrozenTrial, objectives: list[str], current: int) -> dict:
    s = t.user_attrs.get(records.STUDENT, {})
    return {"trial": t.number, "current": t.number == current,
            "scores": [maybe_round(float(v)) for v in t.values],
            "student": f"L{s.get('layers')}/H{s.get('hidden')}/A{s.get('heads')}",
            "params_m": round(s.get("params", 0) / 1e6, 1)}


def card_data(model_name: str, base_model: Optional[str], dataset_id: Optional[str], dataset_name: str,
              subset: Optional[str], split: str, metrics: dict, license: str, language: Optional[str]):
    """The YAML front matter as huggingface_hub data: a valid model-index with every final metric."""
    from huggingface_hub import EvalResult, ModelCardData

    dataset_type = dataset_id if hub_id(dataset_id) else dataset_name
    results = [EvalResult(task_type="text-classification", task_name="Text Classification",
                          dataset_type=dataset_type, dataset_name=dataset_name, dataset_config=subset,
                          dataset_split=split, metric_type=k, metric_name=METRIC_NAMES[k],
                          metric_value=float(metrics[k]))
               for k in METRIC_NAMES if k in metrics]
    return ModelCardData(
        model_name=model_name,
        base_model=base_model,
        datasets=[dataset_id] if hub_id(dataset_id) else None,
        language=language,
        license=license,
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=["generated_from_searcher", "knowledge-distillation", "text-classification"],
        metrics=[k for k in METRIC_NAMES if k in metrics and k != "loss"],
        eval_results=results,
    )


# ---------------------------------------------------------------------------------------------------------------
# Rendering


def render(ctx: dict, template: Optional[Path] = None) -> str:
    import jinja2

    path = Path(template) if template else templates_dir() / TEMPLATE
    if not path.is_file():
        raise ConfigError(f"card template {path} does not exist; fix [card] template or --template")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(path.parent)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    try:
        text = env.get_template(path.name).render(**ctx)
    except jinja2.UndefinedError as e:
        raise ConfigError(f"card template {path}: {e.message}; fix the variable name (the context is documented "
                          f"in searcher/card.py)") from e
    except jinja2.TemplateSyntaxError as e:
        raise ConfigError(f"card template {path} line {e.lineno}: {e.message}") from e
    return text


def validate(text: str) -> None:
    """The card must load with ModelCard and its model-index must round-trip to eval results (offline)."""
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard import metadata_load
    from huggingface_hub.repocard_data import model_index_to_eval_results

    try:
        ModelCard(text, ignore_metadata_errors=False)
        meta = metadata_load_text(text, metadata_load)
        model_index_to_eval_results(meta["model-index"])
    except Exception as e:
        raise StudyError(f"the rendered card's metadata is invalid ({first_line(e)}); check the card template's "
                         f"front matter") from e


def metadata_load_text(text: str, loader) -> dict:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "README.md"
        p.write_text(text)
        return loader(p) or {}


def trial_json(study: optuna.Study, trial: FrozenTrial, repo_id: Optional[str]) -> dict:
    """The machine-readable record that travels with the model (no paths of this machine, no tokens)."""
    r = records.TrialRecord.from_trial(trial)
    attrs = study.user_attrs
    teacher = {k: v for k, v in attrs.get(ATTR_TEACHER, {}).items() if k != "path"}
    return records.plain({
        "study": study.study_name, "trial": r.number, "trial_id": r.trial_id, "state": r.state,
        "repo_id": repo_id, "objectives": study.metric_names, "values": r.values, "params": r.params,
        "hyperparams": r.hyperparams, "metrics": r.metrics, "test_metrics": r.test_metrics, "history": r.history,
        "student": r.student, "batch": r.batch, "runtime": r.runtime, "latency_ms": r.latency_ms,
        "size_mb": r.size_mb, "wall_time_s": r.wall_time_s, "teacher": teacher,
        "dataset": attrs.get(ATTR_DATASET), "versions": attrs.get(ATTR_VERSIONS),
        "datetime_start": r.datetime_start, "datetime_complete": r.datetime_complete,
        "searcher_version": metadata.version("searcher") if _installed("searcher") else None,
    })


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
        return True
    except metadata.PackageNotFoundError:
        return False


def card_text(study: optuna.Study, config: StudyConfig, trial: FrozenTrial, repo_id: Optional[str] = None,
              template: Optional[Path] = None) -> str:
    ctx = context(study, trial, repo_id=repo_id, license=config.card.license, language=config.card.language,
                  dataset_name=config.card.dataset_name)
    text = render(ctx, template or config.card.template)
    validate(text)
    return text


def write_folder(study: optuna.Study, config: StudyConfig, trial: FrozenTrial, out: Path,
                 repo_id: Optional[str] = None, template: Optional[Path] = None) -> Path:
    """README.md + model + tokenizer + searcher_trial.json: exactly what `searcher push` uploads."""
    r = records.TrialRecord.from_trial(trial)
    if not r.kept:
        raise StudyError(f"trial {r.number}'s student is no longer on disk (only the best {config.study.keep_best} "
                         f"are kept); raise [study] keep_best, or re-run it with [[enqueue]] and its params "
                         f"{r.params}")
    text = card_text(study, config, trial, repo_id, template)
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for f in sorted(Path(r.model_dir).iterdir()):
        if f.is_file() and f.name not in MODEL_FILES_EXCLUDED:
            shutil.copy2(f, out / f.name)
    (out / "README.md").write_text(text, encoding="utf-8")
    (out / "searcher_trial.json").write_text(json.dumps(trial_json(study, trial, repo_id), indent=1,
                                                        sort_keys=True) + "\n")
    return out


def export(study: optuna.Study, config: StudyConfig, trial: Optional[int] = None, top: Optional[int] = None,
           pareto_front: bool = False, out: Optional[str] = None, template: Optional[str] = None) -> list[Path]:
    chosen = records.select(study, trial=trial, top=top, pareto_front=pareto_front)
    base = Path(out) if out else config.output_dir / "cards"
    folders = []
    for t in chosen:
        repo_id = repo_id_for(config.hub.repo_id, config.study.name, t) if config.hub.repo_id else None
        folders.append(write_folder(study, config, t, base / f"trial-{t.number:04d}", repo_id,
                                    Path(template) if template else None))
    return folders
