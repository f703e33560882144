"""Cross-field checks of a study file: everything that can be known without loading a model or data.

`check(config)` runs once, after searcher.config.parse built the sections, and returns the config with the values
it resolves (objectives, pruner, grace period). Each rule raises `ConfigError` naming the key and the fix.
This module must not import torch, transformers or optuna.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

from searcher import hyperparams, redact, tasks
from searcher.tasks import metrics
from searcher.config import repo_id
from searcher.config.schema import (DEFAULT_CHECKPOINT, EXPORT_FORMATS, SAFE_NAME, PrunerConfig,
                                    SamplerConfig, StopConfig, StudyConfig, StudySection, TeacherMember)
from searcher.errors import ConfigError
from searcher.hyperparams import Fixed, extent as dimension_values

FORMS = EXPORT_FORMATS + ("pytorch",)  # what an objective's @FORM may name: an exported form, or PyTorch beside them



def check(config: StudyConfig) -> StudyConfig:
    study = _check_study(config)
    _check_data(config)
    _check_teacher(config)
    _check_student(config)
    _check_search(config)
    _check_train(config)
    _check_hub(config)
    _check_distill(config)
    _check_report(config)
    config = dataclasses.replace(config, study=study)
    return _resolve_task(config, config.data.task) if config.data.task != "auto" else config  # checked above


def _check_study(config: StudyConfig) -> StudySection:
    """[study] on its own and against the metrics; returns it with objectives, pruner and grace period resolved."""
    p, s = config.path, config.study
    if not SAFE_NAME.fullmatch(s.name):
        raise ConfigError(f"{p}: [study] name {s.name!r} names folders and files: use letters, digits and . _ + - "
                          f"(starting with a letter or digit, at most 128 characters), e.g. \"sst2-mini\"")
    for key in ("n_trials", "keep_best", "heartbeat_interval", "max_retry"):
        v = getattr(s, key)
        if v is not None and v < (0 if key == "max_retry" else 1):
            raise ConfigError(f"{p}: [study] {key} must be positive, got {v}")
    for entry in s.warm_start:
        url, _, name = entry.rpartition("::")
        if not url.strip() or not name.strip():
            raise ConfigError(f"{p}: [study] warm_start entry {redact.text(entry)!r} must be "
                              f"\"STORAGE_URL::STUDY_NAME\", e.g. [\"sqlite:////abs/path/other.db::other-study\"]")
    if s.timeout is not None and s.timeout <= 0:
        raise ConfigError(f"{p}: [study] timeout must be positive seconds, got {s.timeout}")
    if not 1 <= len(s.directions) <= 3 or any(x not in ("maximize", "minimize") for x in s.directions):
        raise ConfigError(f"{p}: [study] directions must be one to three of \"maximize\"/\"minimize\", e.g. "
                          f"[\"maximize\"] or [\"maximize\", \"minimize\"], got {list(s.directions)}")
    kind = config.data.task if config.data.task != "auto" else None
    default = tasks.KINDS[kind or tasks.DEFAULT].default_objective
    objectives = s.objectives or ((default,) if len(s.directions) == 1 else (default, "latency_ms"))
    if len(objectives) != len(s.directions):
        raise ConfigError(f"{p}: [study] objectives has {len(objectives)} names but directions has "
                          f"{len(s.directions)}; give one name per direction")
    for name, direction in zip(objectives, s.directions):
        metric, form = metrics.split_objective(name)
        metrics.check_name(metric, f"{p}: [study] objectives", kind)
        if form is None and metric in metrics.FORMAT_MEASURES and metric not in metrics.MEASURED:
            raise ConfigError(f"{p}: [study] objective {name!r} needs a format, e.g. \"{metric}@onnx-int8\"")
        if "@" in name and form is None:
            raise ConfigError(f"{p}: [study] objective {name!r} names no format after '@'; use e.g. "
                              f"\"{metric}@onnx-int8\" (formats: {', '.join(FORMS)}) or \"{metric}\"")
        if form is not None and form not in FORMS:
            raise ConfigError(f"{p}: [study] objective {name!r}: {form!r} is not a form searcher measures; use one of "
                              f"{', '.join(FORMS)}")
        if form is not None and not config.export.formats:
            raise ConfigError(f"{p}: [study] objective {name!r} is measured on the exported students, and [export] "
                              f"formats = [] turns export off; set formats = [\"onnx\", \"onnx-int8\"] or drop "
                              f"\"@{form}\"")
        if form is not None:
            if metric in metrics.MEASURED and metric not in metrics.FORMAT_MEASURES:
                raise ConfigError(f"{p}: [study] objective {name!r}: {metric} is the same in every format; drop "
                                  f"\"@{form}\"")
            if form not in config.export.formats + ("pytorch",):
                raise ConfigError(f"{p}: [study] objective {name!r} needs the {form!r} format: add it to [export] "
                                  f"formats (have {list(config.export.formats)})")
        natural = metrics.natural_direction(metric)
        if natural and direction != natural:
            raise ConfigError(f"{p}: [study] objective {name!r} should be paired with direction {natural!r}")
    for name in config.metrics.report:
        metrics.check_name(name, f"{p}: [metrics] report", kind)
        if name in metrics.builtin_names() or name in metrics.MEASURED or name in metrics.FORMAT_MEASURES:
            raise ConfigError(f"{p}: [metrics] report: {name!r} is always recorded; list only other metrics there")
    if "latency_ms" in objectives and not config.train.latency:
        raise ConfigError(f"{p}: [study] objective 'latency_ms' needs [train] latency = true")
    _check_sampler(p, s.sampler, multi=len(s.directions) > 1)
    st = config.student
    if s.sampler.type == "cmaes" and len(st.family) > 1:
        raise ConfigError(f"{p}: [study] sampler = \"cmaes\" needs a fixed search space, and [student] family = "
                          f"{list(st.family)} asks each family's own parameters; search one family per study, or use "
                          f"\"tpe\" (the default) or \"gp\"")
    if s.sampler.type == "cmaes" and "teacher" in st.init and len(st.init) > 1 and len(st.hidden or ()) > 1:
        # the hidden size is a parameter of non-teacher students only; CMA-ES keys its generations by number, not
        # by search space, and fails when the space changes between trials (Optuna: no dynamic search space)
        raise ConfigError(f"{p}: [study] sampler = \"cmaes\" needs a fixed search space, but with [student] init = "
                          f"{list(st.init)} the hidden size is searched for non-teacher students only; search "
                          f"teacher-initialised students in their own study, or use \"tpe\" (the default) or \"gp\"")
    pruner = s.pruner
    if len(s.directions) > 1:
        if pruner is not None and pruner.type != "none":
            raise ConfigError(f"{p}: [study] pruner = {pruner.type!r} needs a single objective; Optuna cannot prune "
                              f"multi-objective trials, so every trial runs all its epochs (to spend less, use fewer "
                              f"epochs or a single-objective study first). Remove the pruner line or set pruner = "
                              f"\"none\"")
        pruner = PrunerConfig(type="none")
    elif pruner is None:
        pruner = PrunerConfig()
    _check_pruner(p, pruner, int(dimension_values(config.search.epochs)[1]))
    if s.stop is not None:
        _check_stop(p, s.stop, objectives, multi=len(s.directions) > 1)
    return dataclasses.replace(s, objectives=tuple(objectives), pruner=pruner,
                               grace_period=s.grace_period or 2 * s.heartbeat_interval)


def _check_sampler(p: Path, sampler: SamplerConfig, multi: bool) -> None:
    where = f"{p}: [study] sampler"
    if multi and sampler.type == "cmaes":
        raise ConfigError(f"{where} = \"cmaes\" optimizes one objective; with several use \"tpe\" (the default), "
                          f"\"gp\" or \"nsga2\"")
    if not multi and sampler.type == "nsga2":
        raise ConfigError(f"{where} = \"nsga2\" ranks trials by Pareto dominance, which needs two or more "
                          f"objectives; with one objective use \"tpe\" (the default), \"gp\" or \"cmaes\"")
    at_least = {"n_startup_trials": 0, "n_ei_candidates": 1, "popsize": 2, "population_size": 2}
    for key, low in at_least.items():
        v = getattr(sampler, key)
        if v is not None and v < low:
            raise ConfigError(f"{where}.{key} must be >= {low}, got {v}")
    if sampler.sigma0 is not None and sampler.sigma0 <= 0:
        raise ConfigError(f"{where}.sigma0 must be > 0 (CMA-ES's initial step size), got {sampler.sigma0}")
    for key in ("mutation_prob", "crossover_prob", "swapping_prob"):
        v = getattr(sampler, key)
        if v is not None and not 0 <= v <= 1:
            raise ConfigError(f"{where}.{key} is a probability and must lie in [0, 1], got {v}")


def _check_pruner(p: Path, pruner: PrunerConfig, epochs: int) -> None:
    where = f"{p}: [study] pruner"
    for key, low in (("n_startup_trials", 0), ("n_warmup_steps", 0), ("reduction_factor", 2),
                     ("min_early_stopping_rate", 0), ("patience", 0)):
        v = getattr(pruner, key)
        if v < low:
            raise ConfigError(f"{where}.{key} must be >= {low}, got {v}")
    if pruner.min_delta < 0:
        raise ConfigError(f"{where}.min_delta must be >= 0, got {pruner.min_delta}")
    # a trial is never pruned after its last epoch (searcher.search.objective), and PatientPruner needs patience + 2 reports
    if pruner.type == "patient" and pruner.patience + 2 > epochs - 1:
        raise ConfigError(f"{where}: patience = {pruner.patience} can never stop a trial of {epochs} epochs (it needs "
                          f"patience + 2 epochs before the last); use patience = {max(epochs - 3, 0)} or more epochs"
                          if epochs >= 3 else f"{where} = \"patient\" needs 3 or more epochs, the study has {epochs}")


# objectives whose noise the terminator can estimate itself: proportions measured on the validation split
PROPORTIONS = ("accuracy", "f1", "precision", "recall", "micro_f1", "macro_f1", "subset_accuracy")


def _check_stop(p: Path, stop: StopConfig, objectives: tuple[str, ...], multi: bool) -> None:
    where = f"{p}: [study] stop"
    if multi:
        raise ConfigError(f"{where} needs a single objective (a Pareto front has no single best value to watch); a "
                          f"multi-objective study runs until n_trials or timeout: remove the stop line")
    metric = metrics.split_objective(objectives[0])[0]
    if stop.terminator and stop.min_delta == 0 and metric not in PROPORTIONS:
        raise ConfigError(f"{where}: the terminator needs min_delta (the noise of {objectives[0]!r}, e.g. one standard "
                          f"error) for an objective other than {', '.join(PROPORTIONS)}")


def _check_data(config: StudyConfig) -> None:
    p, d = config.path, config.data
    if d.dataset and d.train:
        raise ConfigError(f"{p}: [data] give either dataset (a Hub id) or local train/validation files, not both")
    if not d.dataset and not d.train:
        raise ConfigError(f"{p}: [data] needs dataset = \"<hub id>\" or train = \"path/to/train.csv\"")
    if not d.dataset and not d.validation and d.holdout is None:
        raise ConfigError(f"{p}: [data] local data needs validation = \"path\" or holdout = 0.1 "
                          f"(a fraction or a row count of train to evaluate on)")
    if not 1 <= len(d.text_columns) <= 2:
        raise ConfigError(f"{p}: [data] text_columns takes one column or two (sentence pairs), got {list(d.text_columns)}")
    if d.label_delimiter is not None and not d.label_delimiter:
        raise ConfigError(f"{p}: [data] label_delimiter must not be empty: give the text between a row's labels "
                          f"(e.g. \",\"), or remove it for labels given as lists")
    if d.holdout is not None and not (0 < d.holdout < 1 or (d.holdout >= 1 and float(d.holdout).is_integer())):
        raise ConfigError(f"{p}: [data] holdout must be a fraction in (0, 1) or a whole row count, got {d.holdout}")
    for key in ("max_train_samples", "max_eval_samples"):
        v = getattr(d, key)
        if v is not None and v < 1:
            raise ConfigError(f"{p}: [data] {key} must be positive, got {v}")
    if d.transfer and d.transfer_dataset:
        raise ConfigError(f"{p}: [data] give either transfer (a file) or transfer_dataset (a Hub id), not both")
    columns = d.transfer_text_columns or d.text_columns
    if len(columns) != len(d.text_columns):
        raise ConfigError(f"{p}: [data] transfer_text_columns {list(columns)} must name as many columns as "
                          f"text_columns {list(d.text_columns)} (one for sentences, two for pairs)")
    if d.max_transfer_samples is not None and d.max_transfer_samples < 1:
        raise ConfigError(f"{p}: [data] max_transfer_samples must be positive, got {d.max_transfer_samples}")
    if d.max_transfer_samples is not None and not d.has_transfer:
        raise ConfigError(f"{p}: [data] max_transfer_samples caps the transfer set, and there is none; add transfer = "
                          f"\"file\" (or transfer_dataset) or remove max_transfer_samples")
    if d.transfer_text_columns is not None and not d.has_transfer:
        raise ConfigError(f"{p}: [data] transfer_text_columns names the transfer set's columns, and there is none; "
                          f"add transfer = \"file\" (or transfer_dataset) or remove transfer_text_columns")
    a = d.augment
    for key in ("p_mask", "p_swap", "p_ngram"):
        if not 0 <= getattr(a, key) <= 1:
            raise ConfigError(f"{p}: [data.augment] {key} is a probability and must lie in [0, 1], got "
                              f"{getattr(a, key)}")
    if a.p_mask + a.p_swap > 1:
        raise ConfigError(f"{p}: [data.augment] p_mask + p_swap = {a.p_mask + a.p_swap:g} must be at most 1 (one "
                          f"draw per word decides mask, swap or keep)")
    if len(a.ngram_range) not in (1, 2) or not 1 <= a.ngram_range[0] <= a.ngram_range[-1]:
        raise ConfigError(f"{p}: [data.augment] ngram_range must be [low, high] with 1 <= low <= high, got "
                          f"{list(a.ngram_range)}")
    _check_task(config)
    if d.max_length < 8:
        raise ConfigError(f"{p}: [data] max_length {d.max_length} leaves little or no room for text after the "
                          f"special tokens ([CLS], [SEP]); use 16 or more (128 is typical)")
    if d.max_length > 4096:
        raise ConfigError(f"{p}: [data] max_length {d.max_length} is larger than any BERT supports; use <= 512")


def _check_task(config: StudyConfig) -> None:
    """What only some task kinds take; with [data] task = "auto" the same is checked once the kind is inferred
    (searcher.search.prepare, `for_task`)."""
    if config.data.task != "auto":
        check_task(config, config.data.task)


def check_task(config: StudyConfig, kind: str) -> None:
    p, d = config.path, config.data
    if not tasks.KINDS[kind].uses_threshold and d.threshold != 0.5:
        raise ConfigError(f"{p}: [data] threshold is the decision threshold of multi-label classification, and this "
                          f"study is {tasks.KINDS[kind].title}; remove it")
    named = "temperature" in config.raw.get("search", {})  # else the registry's default range, which a kind may lack
    if not tasks.KINDS[kind].uses_temperature and named and not isinstance(config.search.temperature, Fixed):
        raise ConfigError(f"{p}: [search] temperature does not apply to {tasks.KINDS[kind].title}: its student "
                          f"learns the teacher's outputs by squared error, with nothing to soften; give temperature "
                          f"one value (it is ignored) or remove it")
    members = teacher_members(config)
    if not tasks.KINDS[kind].has_probabilities and len(members) > 1 and config.teacher.combine == "probabilities":
        raise ConfigError(f"{p}: [teacher] combine = \"probabilities\" averages class probabilities, and "
                          f"{tasks.KINDS[kind].title} has none; use combine = \"logits\" (the mean score)")
    from searcher.teachers import TYPES

    cannot = next((m for m in members if not TYPES[m.type].teaches(tasks.KINDS[kind])), None)
    if cannot is not None:
        raise ConfigError(f"{p}: teacher {cannot.name!r} is a {TYPES[cannot.type].title} teacher, which cannot teach "
                          f"{tasks.KINDS[kind].title}; use a classifier teacher for it")


def for_task(config: StudyConfig, kind: str) -> StudyConfig:
    """The config of a study of this task kind (inferred from the data): checked for it, and resolved for it."""
    check_task(config, kind)
    return _resolve_task(config, kind)


def _resolve_task(config: StudyConfig, kind: str) -> StudyConfig:
    """Without the default temperature range when the kind has no temperature (a study file that does not name it
    must work for every kind; searching it would only add a parameter that changes nothing)."""
    if tasks.KINDS[kind].uses_temperature or isinstance(config.search.temperature, Fixed):
        return config
    return dataclasses.replace(config, search=dataclasses.replace(config.search, temperature=Fixed(1.0)))


# what [teacher] may hold beside [[teachers]]
SHARED_TEACHER_KEYS = {"combine", "layer_wise", "inference_batch_size", "search_weights"}


def teacher_members(config: StudyConfig) -> tuple[TeacherMember, ...]:
    """The study's teachers, each named: [[teachers]], the seeds of a [teacher] seed ensemble, or [teacher] alone."""
    t = config.teacher
    if config.teachers:
        given = config.teachers
    elif t.seeds:
        stem = t.name or _stem(t.base)
        given = tuple(dataclasses.replace(_member(t), name=f"{stem}-seed{seed}",
                                          settings=dataclasses.replace(t.settings, seed=seed)) for seed in t.seeds)
    else:
        given = (_member(t),)
    return tuple(m if m.name else dataclasses.replace(m, name=_stem(m.model or m.base or "teacher")) for m in given)


def _member(t) -> TeacherMember:
    return TeacherMember(**{f.name: getattr(t, f.name) for f in dataclasses.fields(TeacherMember)})


def _stem(source: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._+-]+", "-", source.rstrip("/").split("/")[-1].split(":")[-1]).strip("-.")
    return stem[:64] or "teacher"


def _check_teacher(config: StudyConfig) -> None:
    from searcher.teachers import TYPES

    p, t = config.path, config.teacher
    if t.inference_batch_size < 1:
        raise ConfigError(f"{p}: [teacher] inference_batch_size must be positive, got {t.inference_batch_size}")
    if config.teachers:
        extra = [k for k in config.raw.get("teacher", {}) if k not in SHARED_TEACHER_KEYS]
        if extra:
            raise ConfigError(f"{p}: [teacher] {extra[0]} belongs in each [[teachers]] entry when the study lists "
                              f"several; [teacher] then holds only {', '.join(sorted(SHARED_TEACHER_KEYS))}")
        where = [f"[[teachers]] {i + 1}" for i in range(len(config.teachers))]
        for w, m in zip(where, config.teachers):
            _check_member(config, w, m)
    else:
        if "weight" in config.raw.get("teacher", {}):
            raise ConfigError(f"{p}: [teacher] weight is a teacher's share of an ensemble; give it in each "
                              f"[[teachers]] entry, or remove it")
        _check_member(config, "[teacher]", t)
        if t.seeds is not None:
            if not t.base:
                raise ConfigError(f"{p}: [teacher] seeds fine-tunes base once per seed (a seed ensemble); set "
                                  f"base = \"<pretrained model>\" or remove seeds")
            if t.seed is not None:
                raise ConfigError(f"{p}: [teacher] give seed (one fine-tune) or seeds (one per seed), not both")
            if not t.seeds:
                raise ConfigError(f"{p}: [teacher] seeds must name at least one seed")
            given = config.raw.get("teacher", {}).get("seeds")  # the parsed tuple has lost its repeats
            repeated = next((x for i, x in enumerate(given) if x in given[:i]), None) \
                if isinstance(given, list) else None
            if repeated is not None:
                raise ConfigError(f"{p}: [teacher] seeds names seed {repeated} twice, and one seed fine-tunes the "
                                  f"same teacher again; give each member of the seed ensemble its own seed")
    members = teacher_members(config)
    names = [m.name for m in members]
    for name in names:
        if not SAFE_NAME.fullmatch(name):
            raise ConfigError(f"{p}: teacher name {name!r} names cache folders and card lines: use letters, digits "
                              f"and . _ + - (set name = ... in its [[teachers]] entry)")
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise ConfigError(f"{p}: two teachers are named {dup!r}; give each [[teachers]] entry its own name = ...")
    if t.layer_wise is not None:
        chosen = next((m for m in members if m.name == t.layer_wise), None)
        if chosen is None:
            raise ConfigError(f"{p}: [teacher] layer_wise = {t.layer_wise!r} names no teacher; use one of "
                              f"{', '.join(repr(n) for n in names)}")
        if not TYPES[chosen.type].has_layers:
            raise ConfigError(f"{p}: [teacher] layer_wise = {t.layer_wise!r} is a {TYPES[chosen.type].title} teacher, "
                              f"whose layers a classifier student cannot match; name a classifier teacher")
    elif len(members) > 1 and config.distill.layer_wise:
        raise ConfigError(f"{p}: [distill] {config.distill.layer_wise[0]} matches one teacher's layers, and this "
                          f"study has {len(members)}; set [teacher] layer_wise = one of "
                          f"{', '.join(repr(n) for n in names)}")
    _check_search_weights(config, members)
    classifiers = [m for m in members if TYPES[m.type].has_layers]
    if not classifiers and (config.student.needs_teacher_model or config.distill.layer_wise
                            or config.student.static_from_teacher):
        what = "[student] init \"teacher\"/\"random\"" if config.student.needs_teacher_model else \
            f"[distill] {config.distill.layer_wise[0]}"
        if config.student.static_from_teacher:
            raise ConfigError(f"{p}: [student] family \"static\" distils its table from the teacher by default, and "
                              f"this study's teachers are causal LMs; set [student] static_base = an encoder "
                              f"(e.g. \"sentence-transformers/all-MiniLM-L6-v2\")")
        raise ConfigError(f"{p}: {what} needs a classifier teacher's layers and tokenizer, and this study's teachers "
                          f"are causal LMs; use init = \"pretrained\" (or [student] checkpoints) and logit KD, or "
                          f"add a classifier teacher")


def _check_search_weights(config: StudyConfig, members: tuple[TeacherMember, ...]) -> None:
    p, sw = config.path, config.teacher.search_weights
    if sw is None:
        return
    if len(members) < 2:
        raise ConfigError(f"{p}: [teacher] search_weights searches the shares of an ensemble, and this study has one "
                          f"teacher; list several in [[teachers]] (or give [teacher] seeds), or remove it")
    if len(sw) != 2 or not all(math.isfinite(x) for x in sw) or not 0 < sw[0] < sw[1]:
        raise ConfigError(f"{p}: [teacher] search_weights must be [low, high] with 0 < low < high (each teacher's "
                          f"weight is searched log-uniformly in it, then normalised), got {list(sw)}")
    fixed = next((i for i, m in enumerate(config.raw.get("teachers") or []) if "weight" in m), None)
    if fixed is not None:
        raise ConfigError(f"{p}: [[teachers]] {fixed + 1} fixes its weight and [teacher] search_weights searches "
                          f"every teacher's; remove one of them")


def _check_member(config: StudyConfig, where: str, m: TeacherMember) -> None:
    """The keys every teacher has; then its kind's own rules (searcher.teachers: the kind's `check_settings`)."""
    from searcher.teachers import TYPES

    p = config.path
    if bool(m.model) == bool(m.base):
        raise ConfigError(f"{p}: {where} give exactly one of model = \"<fine-tuned classifier>\" or "
                          f"base = \"<pretrained model to fine-tune once>\"")
    if not (m.weight > 0 and m.weight != float("inf")):
        raise ConfigError(f"{p}: {where} weight must be a positive number (its share of the ensemble), got "
                          f"{m.weight}")
    TYPES[m.type].check_settings(m, f"{p}: {where}", config)


BERT_KEYS = ("layers", "hidden", "checkpoint", "init", "checkpoints")
STATIC_KEYS = ("static_dim", "static_base", "static_train_embeddings", "static_head")


def _check_families(config: StudyConfig) -> None:
    """[student] family: each family's keys only where the family is searched; a static student's own checks."""
    p, st = config.path, config.student
    given = config.raw.get("student", {})
    if not st.family:
        raise ConfigError(f"{p}: [student] family must name at least one of \"bert\", \"static\"")
    for family, keys in (("bert", BERT_KEYS), ("static", STATIC_KEYS)):
        extra = [k for k in keys if k in given]
        if family not in st.family and extra:
            raise ConfigError(f"{p}: [student] {extra[0]} is a setting of the {family!r} family, which family = "
                              f"{list(st.family)} does not search; add \"{family}\" to family or remove {extra[0]}")
    if "static" not in st.family:
        return
    if not st.static_dim or any(d < 1 or d > 4096 for d in st.static_dim):
        raise ConfigError(f"{p}: [student] static_dim must be a list of integers between 1 and 4096 (e.g. [64, 128, "
                          f"256]), got {list(st.static_dim)}")
    if not st.static_train_embeddings or not st.static_head:
        raise ConfigError(f"{p}: [student] static_train_embeddings and static_head need at least one value")
    if st.static_base is not None and not st.static_base.strip():
        raise ConfigError(f"{p}: [student] static_base is empty; name an encoder (a Hub id or a folder) or remove it "
                          f"to distil from the teacher")
    if config.distill.layer_wise:
        raise ConfigError(f"{p}: [distill] {config.distill.layer_wise[0]} is a layer-wise loss and a static student "
                          f"has no layers; search the static family with losses = [\"logits\"] (in a study of its own)")


def _check_student(config: StudyConfig) -> None:
    p, st = config.path, config.student
    _check_families(config)
    if not st.bert:
        return
    if not st.init:
        raise ConfigError(f"{p}: [student] init must name at least one of \"pretrained\", \"teacher\", \"random\"")
    if st.checkpoints is not None:
        if not st.checkpoints:
            raise ConfigError(f"{p}: [student] checkpoints is empty; list at least one checkpoint")
        if st.init != ("pretrained",):
            raise ConfigError(f"{p}: [student] init = {list(st.init)} builds students from the grid; a checkpoints "
                              f"list needs init = \"pretrained\"")
        if "layers" in config.raw.get("student", {}) or "hidden" in config.raw.get("student", {}):
            raise ConfigError(f"{p}: [student] give either checkpoints = [...] or the layers/hidden grid, not both")
        return
    if not st.layers or any(x < 1 or x > 48 for x in st.layers):
        raise ConfigError(f"{p}: [student] layers must be a list of integers between 1 and 48, got {list(st.layers)}")
    if st.hidden is None and st.init != ("teacher",):
        raise ConfigError(f"{p}: [student] hidden is required, e.g. hidden = [128, 256]")
    for h in st.hidden or ():
        if h < 64 or h % 64:
            raise ConfigError(f"{p}: [student] hidden {h} is not a multiple of 64 (heads = hidden / 64); "
                              f"use e.g. 128, 256, 512 or 768")
    if "pretrained" in st.init and "{" not in st.checkpoint:
        raise ConfigError(f"{p}: [student] checkpoint must be a template with {{layers}}, {{hidden}} and "
                          f"{{heads}}, e.g. {DEFAULT_CHECKPOINT!r}")
    try:
        st.checkpoint.format(layers=2, hidden=128, heads=2)
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(f"{p}: [student] checkpoint template {st.checkpoint!r} may only use {{layers}}, "
                          f"{{hidden}} and {{heads}}") from e


def _check_search(config: StudyConfig) -> None:
    """Every hyperparameter's values must lie in its allowed range (declared in searcher.hyperparams)."""
    for h in hyperparams.REGISTRY:
        dim = getattr(config.search, h.name)
        lo, hi = dimension_values(dim)
        if not (h.admits(lo) and h.admits(hi)):
            got = f"{lo}" if lo == hi else f"[{lo}, {hi}]"
            raise ConfigError(f"{config.path}: [search] {h.name} must lie in {h.allowed()} ({h.help}), got {got}")
        if not h.searchable and not isinstance(dim, Fixed):
            raise ConfigError(f"{config.path}: [search] {h.name} cannot be searched; give one value")


def _check_train(config: StudyConfig) -> None:
    p, tr = config.path, config.train
    for key in ("micro_batch_size", "eval_batch_size", "num_threads"):
        v = getattr(tr, key)
        if v is not None and v < 1:
            raise ConfigError(f"{p}: [train] {key} must be a positive integer, got {v}")
    if tr.cohort != "auto" and tr.cohort < 1:
        raise ConfigError(f"{p}: [train] cohort must be a positive integer or \"auto\", got {tr.cohort}; 1 trains one "
                          f"trial at a time")
    if tr.compile == "":
        raise ConfigError(f"{p}: [train] compile must be true, false or a torch.compile backend's name, got \"\"")
    if tr.device not in ("auto", "cpu") and not tr.device.startswith(("cuda", "mps")):
        raise ConfigError(f"{p}: [train] device must be \"auto\", \"cpu\", \"cuda\" or \"cuda:N\", got {tr.device!r}")


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def _check_hub(config: StudyConfig) -> None:
    p, hub = config.path, config.hub
    if hub.repo_id is not None:
        repo_id.check_template(hub.repo_id, f"{p}: [hub] repo_id")
    if config.card.base_model and not HUB_ID.fullmatch(config.card.base_model):
        raise ConfigError(f"{p}: [card] base_model {config.card.base_model!r} is not a Hub model id; use owner/name, "
                          f"e.g. \"sentence-transformers/all-MiniLM-L6-v2\"")
    if hub.push != "none" and not hub.repo_id:
        raise ConfigError(f"{p}: [hub] push = {hub.push!r} needs repo_id = \"owner/{{study}}-L{{layers}}-H{{hidden}}\"")
    if hub.top_k < 1:
        raise ConfigError(f"{p}: [hub] top_k must be >= 1")


def _check_distill(config: StudyConfig) -> None:
    """[distill] against [search]: a loss's weight is set only when the loss trains, and the stage schedule leaves
    epochs for the predictions."""
    from searcher.losses import LOSSES

    p, d = config.path, config.distill
    if not d.losses:
        raise ConfigError(f"{p}: [distill] losses is empty; list at least \"logits\"")
    if not any(n in LOSSES and LOSSES[n].stage == "logits" for n in d.losses):
        raise ConfigError(f"{p}: [distill] losses must include \"logits\": the student's classifier learns from it "
                          f"(soft targets and the labels); add it, e.g. losses = [\"logits\", {', '.join(repr(n) for n in d.losses)}]")
    searched = config.raw.get("search", {})
    for name, cls in LOSSES.items():
        for h in cls.hyperparams:
            if h.name in searched and name not in d.losses:
                raise ConfigError(f"{p}: [search] {h.name} is the weight of the {name!r} loss, which is not in "
                                  f"[distill] losses {list(d.losses)}; add {name!r} there or remove {h.name}")
    if d.intermediate_epochs < 0:
        raise ConfigError(f"{p}: [distill] intermediate_epochs must be >= 0, got {d.intermediate_epochs}")
    if d.intermediate_epochs and not d.layer_wise:
        raise ConfigError(f"{p}: [distill] intermediate_epochs trains the layer-wise losses first, and losses "
                          f"{list(d.losses)} has none; add one (e.g. \"hidden_mse\") or remove intermediate_epochs")
    fewest = int(dimension_values(config.search.epochs)[0])
    if d.intermediate_epochs >= fewest:
        raise ConfigError(f"{p}: [distill] intermediate_epochs = {d.intermediate_epochs} leaves no epoch for the "
                          f"predictions in a trial of {fewest} epochs; use intermediate_epochs < {fewest} or more "
                          f"[search] epochs")
    if not d.cache_budget_gb >= 0:
        raise ConfigError(f"{p}: [distill] cache_budget_gb must be >= 0 (0: never cache, run the teacher beside the "
                          f"student), got {d.cache_budget_gb}")


def _check_report(config: StudyConfig) -> None:
    """[report]: a tracker's table only beside its name in `to`, and never a secret: a study file is shared, stored
    with the study and shown by the dashboard, so passwords and tokens come from the tracker's environment."""
    from searcher.trackers import TRACKERS

    p, r = config.path, config.report
    tables = config.raw.get("report", {})
    for name, cls in TRACKERS.items():
        if name in tables and name not in r.to:
            raise ConfigError(f"{p}: [report.{name}] sets options of {name!r}, which is not in [report] to "
                              f"{list(r.to)}; add it there or remove the table")
        settings = getattr(r, name)
        for f in dataclasses.fields(settings):
            value = getattr(settings, f.name)
            if not isinstance(value, str):
                continue
            if not value.strip():
                raise ConfigError(f"{p}: [report.{name}] {f.name} must not be empty; remove it to use the default")
            if redact.text(value) != value:
                env = cls.environment(f.name)
                where = ", ".join(env[:-1]) + (" or " if len(env) > 1 else "") + env[-1] if env else \
                    f"{name}'s own login"
                raise ConfigError(f"{p}: [report.{name}] {f.name} holds a password or token; a study file must not: "
                                  f"put it in the environment ({where}) and remove it from {f.name}")
