"""The facts a card shows, typed and already rounded: `CardContext` and its parts (the template's variables).

searcher.card.context fills them from what the study stored; the template only lays them out.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional, Union


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
class MemberFacts:
    """One teacher of an ensemble (or a causal LM teacher): what it is, its size and its own metrics."""

    name: str
    id: Optional[str]
    link: Optional[str]
    type: str  # "classifier" or "causal_lm"
    fine_tuned_by_searcher: bool
    seed: Optional[int]
    layers: Optional[int]
    hidden: Optional[int]
    params_m: float
    size_mb: Optional[float]
    weight: Optional[float]
    metrics: list[MetricLine]
    prompt: Optional[str] = None  # a causal LM teacher's prompt and its verbalizer per label
    verbalizers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class BaselineFacts:
    """The task's constant baseline on the validation split, and the teachers that scored no better (a warning)."""

    metric: str
    value: str
    constant: str  # "always predicting the majority class"
    no_better: list[MetricLine]  # each such teacher's name and score


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
    members: list[MemberFacts] = field(default_factory=list)  # an ensemble's teachers (empty: one teacher)
    combine: Optional[str] = None  # "logits" or "probabilities": what the ensemble averages
    layer_wise: Optional[str] = None  # the member layer-wise losses and teacher-initialised students read
    causal_lm: Optional[MemberFacts] = None  # a single causal LM teacher's prompt facts
    search_weights: Optional[tuple[float, float]] = None  # the range each member's weight was searched in
    baseline: Optional[BaselineFacts] = None  # set only when a teacher is no better than the constant baseline


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
class LossLine:
    """One distillation loss as it ran (shown when a trial trained with more than the logit loss)."""

    name: str  # its [distill] losses name
    title: str
    weight: Optional[str]
    layers: Optional[str]  # "0<-0, 1<-6, 2<-12" (student <- teacher; 0 = the embeddings)
    projection: Optional[str]  # "Linear(256 -> 384)", trained with the student and never saved
    settings: Optional[str]  # its other [distill.NAME] options


@dataclass(frozen=True)
class Distillation:
    hyperparameters: list[tuple[str, str]]  # alpha, temperature, augmented copies (registry slot "distillation")
    losses: list[LossLine]  # empty for the logit loss alone (the formula says it all)
    intermediate_epochs: int  # TinyBERT's schedule: epochs of layer-wise losses alone, then the logits alone
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
    static: Optional[str] = None  # a static-embedding student, in words (searcher.train.static)


@dataclass(frozen=True)
class ResultsTable:
    header: list[str]
    rows: list[list[str]]
    widths: list[int]
    has_cross_entropy: bool


@dataclass(frozen=True)
class FormatRow:
    """One deployable form of the student, measured side by side with the others (searcher.records.export.measure)."""

    name: str  # "PyTorch fp32", "ONNX fp32", "ONNX int8 (dynamic)"
    file: str
    size_mb: float
    accuracy: str  # the task kind's primary metric (accuracy for single-label classification)
    latency: Latency
    speedup: Optional[float]  # batch throughput against the teacher's (PyTorch fp32)


@dataclass(frozen=True)
class Efficiency:
    size_mb: Optional[float]
    params_m: float
    latency: Optional[Latency]
    speedup: Optional[dict]
    threads: Optional[int]
    beside_training: bool  # timed in the background while the next trial trained ([train] finish_in_background)
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
    static: bool = False  # a static student (Model2Vec's layout): model2vec's StaticModelPipeline loads it


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
class TaskFacts:
    """What the study's labels are (searcher.tasks), as the card says it."""

    kind: str  # single_label | multi_label | regression
    title: str
    label_loss: str  # the plain label loss on the validation split: "CE", "MSE", "BCE"
    primary: str  # the metric the deployable forms' table shows, titled ("Accuracy", "Pearson")
    pipeline_kwargs: str  # what the pipeline call needs beyond the text (function_to_apply, top_k)
    threshold: Optional[str]  # multi-label: the decision threshold and where it came from
    named: bool = True  # the card says the kind (not for the default, single-label classification)
    pipeline_tag: str = "text-classification"  # the transformers pipeline that runs the student


@dataclass(frozen=True)
class CardContext:
    """Everything a card template may use (the names are the template's variables)."""

    model_name: str
    repo_id: Optional[str]
    use_id: str
    study_name: str
    trial_number: int
    base_model: Optional[Union[str, list]]  # a list for an ensemble: every teacher that is a Hub id
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
    task: TaskFacts
    usage: Usage
    search: SearchFacts
    reproduce: Reproduce
    versions: list[dict]
    card_data: str

    def variables(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}
