"""The study file's schema: one frozen dataclass per section, and the whole validated `StudyConfig`.

Only shapes and defaults live here; reading TOML into them is searcher.config.parse, the rules between fields are
searcher.config.rules, and what defines a study's trials is searcher.config.identity.
This module must not import torch, transformers or optuna: `searcher --help` and config errors stay instant.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

from searcher import hyperparams
from searcher import tasks as _tasks, trackers as _trackers
from searcher.tasks import metrics
from searcher.hyperparams import Dimension

STORAGE_ENV = "SEARCHER_STORAGE"
CACHE_ENV = "SEARCHER_CACHE"
EXPORT_FORMATS = ("onnx", "onnx-int8")  # onnx/model.onnx (fp32) and onnx/model_quantized.onnx (dynamic int8)
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")  # a study name is a path segment: never "." or ".."

# Sections


# What each sampler and pruner type takes in the study file: Optuna's keyword arguments of the same names (see
# searcher.search.strategy, which builds each one and describes it from the same settings). An option of another type is an
# error, not silently ignored.
SAMPLER_OPTIONS: dict[str, tuple[str, ...]] = {
    "tpe": ("n_startup_trials", "n_ei_candidates", "multivariate", "group", "constant_liar"),
    "gp": ("n_startup_trials", "deterministic_objective"),
    "random": (),
    "cmaes": ("n_startup_trials", "sigma0", "popsize", "with_margin", "consider_pruned_trials"),
    "nsga2": ("population_size", "mutation_prob", "crossover_prob", "swapping_prob"),
}
PRUNER_OPTIONS: dict[str, tuple[str, ...]] = {
    "median": ("n_startup_trials", "n_warmup_steps"),
    "hyperband": ("reduction_factor",),
    "successive_halving": ("reduction_factor", "min_early_stopping_rate"),
    "patient": ("patience", "min_delta", "n_startup_trials", "n_warmup_steps"),  # patience around a median pruner
    "none": (),
}


@dataclass(frozen=True)
class SamplerConfig:
    """[study] sampler: a type, or a table with a type and its options (None: the default searcher.search.strategy sets)."""

    type: Literal["tpe", "gp", "random", "cmaes", "nsga2"] = "tpe"
    n_startup_trials: Optional[int] = None
    n_ei_candidates: Optional[int] = None
    multivariate: Optional[bool] = None
    group: Optional[bool] = None
    constant_liar: Optional[bool] = None
    deterministic_objective: Optional[bool] = None
    sigma0: Optional[float] = None
    popsize: Optional[int] = None
    with_margin: Optional[bool] = None
    consider_pruned_trials: Optional[bool] = None
    population_size: Optional[int] = None
    mutation_prob: Optional[float] = None
    crossover_prob: Optional[float] = None
    swapping_prob: Optional[float] = None

    @property
    def options(self) -> dict[str, Any]:
        """The options the study file set for this type."""
        return {k: getattr(self, k) for k in SAMPLER_OPTIONS[self.type] if getattr(self, k) is not None}


@dataclass(frozen=True)
class PrunerConfig:
    type: Literal["median", "hyperband", "successive_halving", "patient", "none"] = "median"
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    reduction_factor: int = 3
    min_early_stopping_rate: int = 0
    # patient: the median pruner is asked only once the trial's best of its last patience + 1 epochs is below (by
    # min_delta) its best before them: a trial whose accuracy is still rising is never stopped
    patience: int = 0
    min_delta: float = 0.0


@dataclass(frozen=True)
class StopConfig:
    """[study] stop: end the study before n_trials when it no longer improves (searcher.search.strategy.stop_reason).

    patience: stop when the best value has not improved by min_delta over the last `patience` finished (complete or
    pruned) trials. terminator: stop when Optuna's regret bound (a GP over the complete trials) says less than the
    noise is left to gain; the noise is min_delta, or else the standard error of the objective on the validation
    split (for accuracy-like objectives). min_trials: complete trials before the terminator is consulted."""

    patience: Optional[int] = None
    min_delta: float = 0.0
    terminator: bool = False
    min_trials: int = 20  # Optuna's Terminator default


@dataclass(frozen=True)
class StudySection:
    name: str
    storage: Optional[str] = None
    n_trials: Optional[int] = None
    timeout: Optional[float] = None
    seed: int = 0
    directions: tuple[str, ...] = ("maximize",)
    objectives: Optional[tuple[str, ...]] = None
    sampler: SamplerConfig = field(default_factory=SamplerConfig, metadata={"parse": "sampler"})
    pruner: Optional[PrunerConfig] = field(default=None, metadata={"parse": "pruner"})
    stop: Optional[StopConfig] = field(default=None, metadata={"parse": "stop"})
    keep_best: int = 3
    output_dir: Optional[Path] = field(default=None, metadata={"parse": "path"})
    cache_dir: Optional[Path] = field(default=None, metadata={"parse": "path"})
    heartbeat_interval: int = 60
    grace_period: Optional[int] = None
    max_retry: int = 3
    warm_start: tuple[str, ...] = ()  # "STORAGE_URL::STUDY_NAME" of finished studies to copy as history


@dataclass(frozen=True)
class AugmentConfig:
    """[data.augment]: Tang et al.'s operations, each word with one draw: masked (p_mask), swapped for another word of
    the training vocabulary (p_swap); then, with p_ngram, only an n-gram of the result kept (searcher.data.augment).
    How many copies a trial uses is the hyperparameter [search] augment."""

    p_mask: float = 0.1
    p_swap: float = 0.1
    p_ngram: float = 0.25
    ngram_range: tuple[int, ...] = (1, 5)


@dataclass(frozen=True)
class DataSection:
    dataset: Optional[str] = None
    subset: Optional[str] = None
    revision: Optional[str] = None
    train: Optional[str] = field(default=None, metadata={"parse": "source"})
    validation: Optional[str] = field(default=None, metadata={"parse": "source"})
    test: Optional[str] = field(default=None, metadata={"parse": "source"})
    train_split: str = "train"
    validation_split: Optional[str] = "validation"
    test_split: Optional[str] = None
    text_columns: tuple[str, ...] = ("sentence",)
    label_column: str = "label"
    # what the labels are (searcher.tasks): "auto" infers it from them and says so in the log
    task: Literal[("auto", *_tasks.KINDS)] = "auto"  # type: ignore[valid-type]  # a kind of searcher.tasks
    label_delimiter: Optional[str] = None  # multi-label labels as strings: "sports,politics"
    threshold: Union[float, str] = field(default=0.5, metadata={"parse": "threshold"})  # multi-label: or "tuned"
    label_names: Optional[tuple[str, ...]] = None
    exclude_labels: tuple[str, ...] = ()
    deduplicate: bool = False
    holdout: Optional[float] = None
    max_train_samples: Optional[int] = None
    max_eval_samples: Optional[int] = None
    max_length: int = 128
    # unlabeled text for the distillation term (labelled by the teacher once): a local file or a Hub dataset
    transfer: Optional[str] = field(default=None, metadata={"parse": "source"})
    transfer_dataset: Optional[str] = None
    transfer_subset: Optional[str] = None
    transfer_split: str = "train"
    transfer_text_columns: Optional[tuple[str, ...]] = None  # default: text_columns
    max_transfer_samples: Optional[int] = None
    augment: AugmentConfig = field(default_factory=AugmentConfig, metadata={"parse": "table"})

    @property
    def has_transfer(self) -> bool:
        return bool(self.transfer or self.transfer_dataset)


@dataclass(frozen=True)
class FineTuneConfig:
    epochs: int = 3
    learning_rate: float = 5e-5
    batch_size: int = 32
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    # go on with a fine-tuned teacher that scores no better than the task's constant baseline (else the study stops
    # before the search: searcher.teachers.baseline)
    allow_baseline: bool = False


@dataclass(frozen=True)
class TeacherMember:
    """One teacher: the keys every kind has, its kind (`type`, searcher.teachers.TYPES) and the settings of that kind,
    which the kind declares (its `Settings`: a classifier's `fine_tune` and `seed`, a causal LM's `prompt` and
    `verbalizers`) and which read as the member's own attributes (`member.prompt`). [teacher] is one; [[teachers]]
    lists several. searcher.config.parse builds both parts from one table."""

    name: Optional[str] = None  # how records and cards name it (default: the last part of its source)
    model: Optional[str] = field(default=None, metadata={"parse": "source"})
    base: Optional[str] = field(default=None, metadata={"parse": "source"})  # a pretrained model to fine-tune once
    revision: Optional[str] = None
    weight: float = 1.0  # its share of the ensemble's target (normalised over the teachers)
    # the kind: given as `type = "..."`, else the one its keys select (searcher.teachers: Teacher.selects)
    type: Optional[str] = None
    settings: Any = field(default=None, metadata={"parse": "skip"})  # the kind's Settings, defaults filled in

    def __getattr__(self, key: str) -> Any:
        # only called for names that are not fields: the kind's own settings (member.prompt, member.fine_tune)
        settings = self.__dict__.get("settings")
        if not key.startswith("__") and key in getattr(settings, "__dataclass_fields__", ()):
            return getattr(settings, key)
        raise AttributeError(f"{type(self).__name__} of type {self.__dict__.get('type')!r} has no {key!r}")


@dataclass(frozen=True)
class TeacherSection(TeacherMember):
    """[teacher]: the study's one teacher, or with `seeds` a seed ensemble of one base; with [[teachers]] only the
    settings shared by all of them (how they combine, which one layer-wise losses read, the inference batch)."""

    seeds: Optional[tuple[int, ...]] = None  # fine-tune `base` once per seed: a seed ensemble
    combine: Literal["logits", "probabilities"] = "logits"  # the ensemble's target: mean of logits or of probabilities
    layer_wise: Optional[str] = None  # the teacher whose layers layer-wise losses and init "teacher" students use
    inference_batch_size: int = 256
    # search each teacher's weight (log-uniform in [low, high], normalised over the teachers) instead of fixing it
    search_weights: Optional[tuple[float, ...]] = None


DEFAULT_CHECKPOINT = "google/bert_uncased_L-{layers}_H-{hidden}_A-{heads}"


@dataclass(frozen=True)
class StudentSection:
    layers: tuple[int, ...] = (2, 4)
    hidden: Optional[tuple[int, ...]] = None
    checkpoint: str = DEFAULT_CHECKPOINT
    init: tuple[Literal["pretrained", "teacher", "random"], ...] = ("pretrained",)  # a list is searched
    checkpoints: Optional[tuple[str, ...]] = None
    # student families searched side by side: "bert" (the grid, teacher-initialised, random, or a checkpoint list:
    # any AutoModelForSequenceClassification) and "static" (searcher.train.static: a Model2Vec-style table + head)
    family: tuple[Literal["bert", "static"], ...] = ("bert",)
    static_dim: tuple[int, ...] = (256,)  # the table's dimension (PCA of the base's outputs; <= its hidden size)
    static_base: Optional[str] = None  # the encoder the table is distilled from (default: the teacher)
    static_train_embeddings: tuple[bool, ...] = (True,)  # train the table with the head, or keep it frozen
    static_head: tuple[Literal["linear", "mlp"], ...] = ("linear",)  # "mlp": one hidden layer of the table's width

    @property
    def needs_teacher_model(self) -> bool:
        return "bert" in self.family and any(i != "pretrained" for i in self.init)

    @property
    def static_from_teacher(self) -> bool:
        return "static" in self.family and self.static_base is None

    @property
    def bert(self) -> bool:
        return "bert" in self.family


# one field per hyperparameter of the registry (searcher.hyperparams): a number fixes it, a range or list searches it
SearchSection = dataclasses.make_dataclass(
    "SearchSection", [(h.name, Dimension, field(default=h.default, metadata={"parse": "dim"}))
                      for h in hyperparams.REGISTRY], frozen=True)
SearchSection.__module__ = __name__


@dataclass(frozen=True)
class TrainSection:
    device: str = "auto"
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    micro_batch_size: Optional[int] = None
    eval_batch_size: Optional[int] = None
    group_by_length: bool = True
    latency: bool = True
    num_threads: Optional[int] = None
    # trials of one student shape and batch size trained together in one step (searcher.train.cohort): a number, or
    # "auto" (as many as the device's memory allows: an out-of-memory halves the cohort); 1 trains one at a time
    cohort: Union[int, Literal["auto"]] = 1
    # torch.compile the forward and loss of each step: true (the default backend, inductor) or a backend's name
    compile: Union[bool, str] = False
    # a kept student's saving, ONNX export, parity and CPU latency rounds in a background thread while the next
    # trial trains, its trial told when they are done: "auto" (on a GPU, whose trials would otherwise wait for the
    # CPU work; not on a CPU, where both would share the same cores), true or false
    finish_in_background: Union[bool, Literal["auto"]] = "auto"


@dataclass(frozen=True)
class CardSection:
    template: Optional[Path] = field(default=None, metadata={"parse": "path"})
    license: str = "apache-2.0"
    language: Optional[str] = "en"
    dataset_name: Optional[str] = None  # the dataset's name in the card (default: the Hub id or the train file)
    base_model: Optional[str] = None  # the Hub id of a local or packaged teacher/student, for base_model and links


@dataclass(frozen=True)
class HubSection:
    repo_id: Optional[str] = None
    private: bool = True
    push: Literal["none", "best", "top-k", "pareto"] = "none"
    top_k: int = 3


@dataclass(frozen=True)
class ExportSection:
    """[export]: the deployable forms each kept student is exported to and measured in (searcher.records.export).
    `formats = []` turns export off. Objectives may name a format: "accuracy@onnx-int8", "latency_ms@onnx"."""

    formats: tuple[Literal["onnx", "onnx-int8"], ...] = EXPORT_FORMATS


@dataclass(frozen=True)
class MetricsSection:
    """[metrics]: `report = [...]` names metrics computed and recorded but not optimized; a `[metrics.NAME]`
    table says how to load and call one `evaluate` metric (see searcher.tasks.metrics)."""

    report: tuple[str, ...] = ()
    specs: tuple[metrics.MetricSpec, ...] = ()

    @property
    def by_name(self) -> dict[str, metrics.MetricSpec]:
        return {m.name: m for m in self.specs}


@dataclass(frozen=True)
class DistillSection:
    """[distill]: which distillation losses a trial trains with (searcher.losses), their [distill.NAME] options,
    and how the teacher's intermediate outputs are served.

    losses: names from searcher.losses.LOSSES; "logits" (soft targets + the labels' cross-entropy) always among them.
    intermediate_epochs: TinyBERT's stage schedule: the first epochs train the intermediate (layer-wise) losses only,
    the rest the logit loss only; 0 trains them all together.
    cache_budget_gb: disk for the teacher's intermediate outputs, computed once like its logits; a study whose
    outputs would need more runs the teacher beside the student for those terms instead.
    settings: ((loss name, its Settings), ...) for the losses that have options, defaults filled in."""

    losses: tuple[str, ...] = ("logits",)
    intermediate_epochs: int = 0
    cache_budget_gb: float = 8.0
    settings: tuple = field(default=(), metadata={"parse": "skip"})

    def settings_of(self, name: str):
        from searcher.losses import LOSSES

        return dict(self.settings).get(name) or LOSSES[name].Settings()

    @property
    def layer_wise(self) -> tuple[str, ...]:
        """The losses of the intermediate ("layers") stage: those that read the models' intermediate outputs."""
        from searcher.losses import LOSSES

        return tuple(n for n in self.losses if n in LOSSES and LOSSES[n].stage == "layers")


# [report]: the experiment trackers searcher reports every trial to (searcher.trackers); each one's settings are a
# table of its own, declared by the tracker (its `Settings`). What a table leaves out comes from the tracker's own
# environment variables (MLFLOW_TRACKING_URI, WANDB_PROJECT, ...), and secrets (passwords, API keys) only ever from
# those: searcher.config.rules refuses them here.
TRACKERS = tuple(_trackers.TRACKERS)  # as [report] to names them

ReportSection = dataclasses.make_dataclass(
    "ReportSection",
    [("to", tuple[Literal[TRACKERS], ...], field(default=()))]
    + [(name, cls.Settings, field(default_factory=cls.Settings, metadata={"parse": "table"}))
       for name, cls in _trackers.TRACKERS.items()], frozen=True)
ReportSection.__module__ = __name__
ReportSection.__doc__ = (f"[report]: `to = [{', '.join(repr(n) for n in TRACKERS)}]` (any of them; none by default) "
                         f"gives every trial one run in each, with its parameters, per-epoch curves, final figures and "
                         f"state (searcher.trackers); [report.NAME] is that tracker's Settings.")


@dataclass(frozen=True)
class StudyConfig:
    path: Path
    study: StudySection
    data: DataSection
    teacher: TeacherSection
    student: StudentSection
    search: SearchSection
    train: TrainSection
    card: CardSection
    hub: HubSection
    export: ExportSection
    enqueue: tuple[dict, ...]
    raw: dict = field(repr=False, compare=False)
    teachers: tuple[TeacherMember, ...] = ()  # [[teachers]]: an ensemble (empty: [teacher] alone)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    distill: DistillSection = field(default_factory=DistillSection)
    report: ReportSection = field(default_factory=ReportSection)

    @property
    def directory(self) -> Path:
        return self.path.parent

    @property
    def multi_objective(self) -> bool:
        return len(self.study.directions) > 1

    @property
    def output_dir(self) -> Path:
        return self.study.output_dir or self.directory / self.study.name

    @property
    def models_dir(self) -> Path:
        return self.output_dir / "models"

    @property
    def artifacts_dir(self) -> Path:
        return self.output_dir / "artifacts"

    @property
    def cache_dir(self) -> Path:
        if self.study.cache_dir is not None:
            return self.study.cache_dir
        if os.environ.get(CACHE_ENV):
            return Path(os.environ[CACHE_ENV]).expanduser().resolve()
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(base) / "searcher"

    def storage_url(self, override: str | None = None) -> str:
        """The storage URL: the --storage flag, then $SEARCHER_STORAGE, then [study] storage, then SQLite beside
        the study file. Environment first so that passwords stay out of study files."""
        url = override or os.environ.get(STORAGE_ENV) or self.study.storage
        if url:
            return url
        return f"sqlite:///{(self.directory / (self.study.name + '.db')).as_posix()}"

    def resolve_file(self, relative: str) -> str:
        """A data file relative to the study file (package: sources, files shipped by a PyPI package, stay as is)."""
        if relative.startswith("package:"):
            return relative
        return str((self.directory / Path(relative).expanduser()).resolve())

    def resolve_model(self, source: str) -> str:
        """A model source: an existing local folder (relative to the study file), a package: source, else a Hub id."""
        if source.startswith("package:"):
            return source
        candidate = self.directory / Path(source).expanduser()
        if candidate.exists() or source.startswith((".", "/", "~")):
            return str(candidate.resolve())
        return source


SECTIONS = {
    "study": StudySection,
    "data": DataSection,
    "teacher": TeacherSection,
    "student": StudentSection,
    "search": SearchSection,
    "train": TrainSection,
    "card": CardSection,
    "hub": HubSection,
    "export": ExportSection,
    "report": ReportSection,
}

