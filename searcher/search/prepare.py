"""Everything a study needs before its first trial: data, teacher (fine-tuned once if asked), cached teacher logits.

`prepare` runs every check that can fail on bad input (files, columns, labels, shapes) BEFORE the study is created,
so a bad study file leaves the storage untouched. Its result is loaded once per worker and shared by all trials.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Optional

from searcher import data, files, teachers
from searcher.teachers import baseline as teacher_baseline, hidden as teacher_hidden
from searcher.train import outputs as model_outputs
from searcher.search import layerwise
from searcher.tasks import metrics
from searcher.train import student
from searcher.data import tokens, transfer
from searcher.config import StudyConfig
from searcher.errors import ConfigError, StudentError, first_line
from searcher.train.runtime import Runtime
from searcher.teachers.logits import TeacherLogits

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    config: StudyConfig
    task: data.Task
    runtime: Runtime
    teacher: teachers.Teacher  # the study's teacher, ready (one, or an ensemble): its logits are the target
    logits: TeacherLogits
    teacher_info: dict
    metrics: metrics.MetricSet = field(default_factory=metrics.MetricSet)
    export_formats: tuple = ()  # the formats kept students are exported to (searcher.records.export), once they can be
    extras: list = field(default_factory=list)  # teacher-labelled text (searcher.data.transfer.TeacherLabelled)
    layerwise: layerwise.TeacherLayers = field(default_factory=layerwise.TeacherLayers)  # the teacher's outputs layer-wise losses read
    _encoded: dict = field(default_factory=dict, repr=False)
    _projections: dict = field(default_factory=dict, repr=False)  # the teacher's attention projections, by layer
    _states: tuple = field(default=(), repr=False)  # (train rows, augment, their cached hidden states as stacked)
    _reweighted: dict = field(default_factory=dict, repr=False)  # (split or extra, weights) -> target, one trial's
    static: Optional["StaticBase"] = None  # [student] family "static": the distilled tables and their tokenizer

    @property
    def primary(self) -> Optional[teachers.Teacher]:
        """The classifier teacher whose layers and tokenizer layer-wise losses and init "teacher"/"random" students
        use (the teacher itself unless it is an ensemble; None when every teacher is a causal LM)."""
        return self.teacher.primary

    @property
    def teacher_identity(self) -> str:
        return self.teacher.identity

    @property
    def teacher_dir(self) -> str:
        t = self.primary or self.teacher.members[0]
        return getattr(t, "directory", None) or t.source

    @property
    def teacher_config(self):
        return self.primary.model_config() if self.primary is not None else None

    def teacher_model(self):
        """(model, tokenizer) of the primary teacher, loaded on first use (init teacher/random students need them)."""
        if self.primary is None:
            raise StudentError("this study's teachers are causal LMs: no classifier teacher to copy or to take a "
                               "tokenizer from; use [student] init = \"pretrained\"")
        return self.primary.model()

    def teacher_head_order(self):
        """Which of the primary teacher's outputs is each of the task's labels (None: the same order), for the head
        a teacher-initialised student copies."""
        return getattr(self.primary, "output_order", None) if self.primary is not None else None

    def static_student(self, spec: student.StudentSpec, seed: int):
        """(model, tokenizer) of a static student on its cached table (searcher.train.static)."""
        from searcher.train import static

        base = self.static
        model = static.build(base.tables[spec.static_dim], base.tokenizer, self.task, spec.static_head,
                             spec.static_train_embeddings, self.config.data.max_length, base.name, seed)
        return model, base.tokenizer

    def encoded(self, tokenizer) -> dict[str, tokens.Encoded]:
        """Every split tokenized by `tokenizer`: once per tokenizer per worker, and once per machine on disk."""
        key = tokens.tokenizer_fingerprint(tokenizer)
        if key not in self._encoded:
            self._encoded[key] = {
                name: tokens.encode(split, tokenizer, self.config.data.max_length, self.config.cache_dir,
                                    f"{self.task.fingerprint}:{name}")
                for name, split in self.task.splits().items()
            }
            for extra in self.extras:  # keyed by their own content (transfer text, augmentation settings)
                self._encoded[key][extra.name] = tokens.encode(
                    extra.split, tokenizer, self.config.data.max_length, self.config.cache_dir,
                    f"{extra.content}:{extra.name}")
        return self._encoded[key]

    def target(self, name: str, weights: tuple = ()):
        """The teacher's outputs for one split: the study's, or the ensemble's under a trial's searched weights
        (then also a teacher-labelled extra by name), formed from the members' cached outputs once per trial and
        kept for the current weights only."""
        if not weights:
            return self.logits.splits[name]
        if any(w != weights for _, w in self._reweighted):
            self._reweighted.clear()  # another trial's weights
        key = (name, tuple(weights))
        if key not in self._reweighted:
            self._reweighted[key] = self.teacher.reweighted(name, weights)
        return self._reweighted[key]

    def training_set(self, encoded: dict, augment: int, weights: tuple = ()):
        """(tokens, teacher logits, sizes) of what a trial trains on: labelled rows plus teacher-labelled ones."""
        extras = [dataclasses.replace(e, logits=self.target(e.name, weights)) for e in self.extras] \
            if weights else self.extras
        return transfer.training_set(encoded["train"], self.target("train", weights), extras, encoded, augment)

    def teacher_outputs(self, encoded: dict, augment: int):
        """What serves the teacher's intermediate outputs to a trial's layer-wise losses (None without them): the
        cached states of the rows it trains on, in training_set's order, or the teacher beside the student."""
        plan = self.layerwise
        if not plan.active:
            return None
        if plan.online:
            return teacher_hidden.OnlineTeacherStates(self.teacher_model()[0], plan.needs, self.runtime)
        # one StackedStates per row set, so its device copy serves every trial; another tokenizer's or augmentation's
        # rows replace it (and let the previous copy go)
        if not self._states or self._states[0] is not encoded["train"] or self._states[1] != augment:
            parts = [(plan.states["train"], encoded["train"].offsets, len(encoded["train"]))]
            for extra in self.extras:
                parts.append((plan.states[extra.name], encoded[extra.name].offsets, len(extra.rows_for(augment))))
            self._states = (encoded["train"], augment, teacher_hidden.StackedStates(parts))
        heads = model_outputs.heads_of(SimpleNamespace(config=self.teacher_config))  # the primary teacher's
        return teacher_hidden.CachedTeacherStates(self._states[2], plan.needs, self._projections, heads)


def with_task(config: StudyConfig, kind: str) -> StudyConfig:
    """The config of a study whose task kind was inferred ([data] task = "auto"): the checks that depend on the
    kind, and the kind's default objective where the study file names none."""
    if config.data.task != "auto":
        return config
    from searcher.config.rules import for_task
    from searcher.tasks import DEFAULT, KINDS

    config = for_task(config, kind)
    named = "objectives" in config.raw.get("study", {})  # else the objective is the default, replaced below
    for name in (list(config.study.objectives) if named else []) + list(config.metrics.report):
        metrics.check_name(metrics.split_objective(name)[0], f"{config.path}: [study] objectives", kind)
    if kind == DEFAULT or named:
        return config
    default = KINDS[kind].default_objective
    objectives = (default,) + tuple(config.study.objectives[1:])
    log.info("data: the objective is %s, %s's default (set [study] objectives to choose)", default, KINDS[kind].title)
    return dataclasses.replace(config, study=dataclasses.replace(config.study, objectives=objectives))


def check_students(config: StudyConfig, teacher_config) -> None:
    """Shape checks that need the teacher's config: init "teacher" copies its layers."""
    st = config.student
    if not st.bert or st.checkpoints is not None or "teacher" not in st.init or teacher_config is None:
        return
    t_hidden = int(getattr(teacher_config, "hidden_size", 0) or 0)
    t_layers = int(getattr(teacher_config, "num_hidden_layers", 0) or 0)
    bad = [h for h in (st.hidden or ()) if h != t_hidden]
    if bad and st.init == ("teacher",):
        raise StudentError(f"{config.path}: [student] init = \"teacher\" copies the teacher's layers, so hidden must "
                           f"be the teacher's {t_hidden}, got {bad[0]}; set hidden = [{t_hidden}] or init = \"random\"")
    if max(st.layers) > t_layers:
        raise StudentError(f"{config.path}: [student] layers {max(st.layers)} is more than the teacher's {t_layers}; "
                           f"init = \"teacher\" needs layers <= {t_layers}")


@dataclass
class StaticBase:
    """The encoder static students are distilled from: its name, tokenizer (the students' too), and one table per
    searched dimension."""

    name: str
    tokenizer: object
    tables: dict  # static_dim -> (vocab, dim) float32


def static_base_config(config: StudyConfig, primary):
    """(name, source, transformers config) of the encoder the static tables come from: [student] static_base, or the
    teacher."""
    from searcher.teachers import loading as teacher_loading

    base = config.student.static_base
    if base is None:
        return "the teacher", primary.directory, primary.model_config()
    source = teacher_loading.locate_source(config.resolve_model(base))
    try:
        return base, source, teacher_loading.load_config(source, where="[student] static_base")
    except Exception as e:
        raise StudentError(f"{config.path}: [student] static_base {base!r} cannot be loaded: {first_line(e)}") from e


def is_encoder(model_config) -> bool:
    """An encoder reads the whole text at once: not a decoder-only or encoder-decoder model."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    kind = getattr(model_config, "model_type", "")
    if getattr(model_config, "is_encoder_decoder", False) or getattr(model_config, "is_decoder", False):
        return False
    return not (kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES)


def check_static(config: StudyConfig, primary) -> None:
    """[student] family "static": model2vec installed, the base an encoder, each static_dim within its hidden size."""
    st = config.student
    if "static" not in st.family:
        return
    from searcher.train import static

    try:
        static.require()
    except static.StaticError as e:
        raise ConfigError(f"{config.path}: {e}") from e
    name, _, base_config = static_base_config(config, primary)
    what = "the teacher" if st.static_base is None else f"static_base {st.static_base!r}"
    if not is_encoder(base_config):
        raise ConfigError(f"{config.path}: [student] {what} is a {base_config.model_type!r} model, not an encoder; "
                          f"a static table is distilled from an encoder's token outputs: set static_base to an "
                          f"encoder (BERT, MiniLM, ModernBERT, a sentence-transformer)")
    hidden = int(getattr(base_config, "hidden_size", 0) or 0)
    if hidden and max(st.static_dim) > hidden:
        raise ConfigError(f"{config.path}: [student] static_dim {max(st.static_dim)} is larger than the hidden size "
                          f"{hidden} of {what} (PCA cannot add dimensions); use static_dim <= {hidden}")


def _prepare_static(p: Prepared) -> None:
    """One table per searched static_dim, each distilled once per (base, dimension) and cached on disk; the base's
    token outputs are computed at most once here, for every dimension missing from the cache."""
    from searcher.teachers import loading as teacher_loading
    from searcher.train import static

    config = p.config
    name, source, base_config = static_base_config(config, p.primary)
    if config.student.static_base is None:
        identity = p.primary.identity
        load = p.teacher_model
    else:
        identity = teacher_loading.identity(source, base_config)

        def load():
            from transformers import AutoModel, AutoTokenizer

            return AutoModel.from_pretrained(source), AutoTokenizer.from_pretrained(source)

    tokenizer = load()[1] if config.student.static_base is not None else p.teacher_model()[1]
    outputs: dict = {}

    def token_outputs():
        if "x" not in outputs:
            encoder = load()[0]
            with_device = p.runtime.device if p.runtime.is_cuda else "cpu"
            outputs["x"] = static.token_outputs(encoder, tokenizer, with_device)
        return outputs["x"]

    key = tokens.tokenizer_fingerprint(tokenizer)
    tables = {dim: static.cached_table(static.table_path(config.cache_dir, identity, key, dim), len(tokenizer), dim,
                                       token_outputs, name if name != "the teacher" else f"the teacher ({source})")
              for dim in config.student.static_dim}
    p.static = StaticBase(name if config.student.static_base is not None else str(source), tokenizer, tables)


def check_pretrained(config: StudyConfig) -> None:
    """Every pretrained student candidate must resolve (a config download at most) before the study starts."""
    from transformers import AutoConfig

    st = config.student
    if not st.bert:
        return
    if st.checkpoints is not None:
        candidates = [config.resolve_model(c) for c in st.checkpoints]
    elif "pretrained" in st.init:
        candidates = [config.resolve_model(student.grid_checkpoint(config, L, H))
                      for L in st.layers for H in (st.hidden or ())]
    else:
        return
    for c in candidates:
        try:
            cfg = AutoConfig.from_pretrained(c)
        except Exception as e:
            raise StudentError(f"student checkpoint {c!r} cannot be loaded: {first_line(e)}; fix [student] "
                               f"checkpoint(s), go online, or use init = \"teacher\"/\"random\"") from e
        check_max_length(config, cfg, f"student checkpoint {c!r}")


def check_max_length(config: StudyConfig, model_config, what: str) -> None:
    """Rows longer than a model's position embeddings would crash its first forward pass: refuse them up front."""
    positions = getattr(model_config, "max_position_embeddings", None)
    if positions and config.data.max_length > positions:
        raise ConfigError(f"{config.path}: [data] max_length = {config.data.max_length} is more than {what} can "
                          f"read ({positions} positions); set max_length <= {positions}")


CACHES = ("tokens", "logits", "teachers", "latency", "intermediate", "static")


def export_formats(config: StudyConfig) -> tuple:
    """The [export] formats, if onnx and onnxruntime are installed. Missing, they fail the study up front when the
    study file asks for export (an [export] section, a format objective); by default a warning says what to
    install and students are kept as PyTorch only."""
    from searcher.records import export

    formats = tuple(config.export.formats)
    if not formats or export.available():
        return formats
    asked = "export" in config.raw or any("@" in o for o in config.study.objectives)
    if asked:
        try:
            export.require()
        except export.ExportError as e:  # the study file asks for what this install cannot do: bad input
            raise ConfigError(f"{config.path}: {e}") from e
    log.warning("export: onnx and onnxruntime are not installed, so students are kept as PyTorch only (%s)",
                export.INSTALL)
    return ()


def prepare(config: StudyConfig, runtime: Runtime, check_data=None) -> Prepared:
    """`check_data(config, task)`, when given, runs once the data is read and before the teacher works on it (a
    resumed study refuses changed data there, before any fine-tuning or labelling)."""
    formats = export_formats(config)
    for name in CACHES:  # temp files of writers that crashed (a full disk, a kill) go before anything is built
        for stale in files.remove_stale(config.cache_dir / name):
            log.info("cache: removed %s, left by a run that crashed while writing it", stale)
    study_teacher = teachers.build(config, runtime)
    for member in study_teacher.members:
        if member.type == "classifier":
            check_max_length(config, member.model_config(),
                             "the teacher" if len(study_teacher.members) == 1 else f"teacher {member.name!r}")
    primary = study_teacher.primary
    check_students(config, primary.model_config() if primary is not None else None)
    check_static(config, primary)
    task = data.load_task(config, label_order=study_teacher.label_order())
    config = with_task(config, task.kind.name)
    task = data.load_transfer(config, task)
    study_metrics = metrics.for_study(config.study.objectives, config.metrics.report, config.metrics.by_name,
                                      task.kind)
    study_teacher.check(task)
    check_pretrained(config)
    if check_data is not None:
        check_data(config, task)
    log.info("data: %s", ", ".join(f"{k} {v}" for k, v in task.description["sizes"].items()))

    study_teacher.ready(task)
    logits = study_teacher.logits(task)
    if len(study_teacher.members) > 1:
        log.info("teacher: %s of %s (%s)", _ensemble_line(study_teacher), ", ".join(
            f"{m.name} {_primary_score(m.metrics, task)}" for m in study_teacher.members),
            f"ensemble {_primary_score(study_teacher.metrics, task)}")
    verdict = teacher_baseline.compare(study_teacher, task, config.study.objectives)
    if verdict["no_better"]:  # a teacher that learned nothing: stop for searcher's own fine-tunes, else say so
        teacher_baseline.refuse(study_teacher, verdict, listed=bool(config.teachers))
        log.warning("%s", teacher_baseline.line(verdict))
    extras = transfer.teacher_labelled(config, task, study_teacher, _mask_token(config, primary))
    if extras:
        removed = task.description.get("transfer", {}).get("removed_overlap", 0)
        log.info("data: teacher-labelled %s%s", ", ".join(f"{e.name} {len(e.split)}" for e in extras),
                 f" ({removed} transfer rows removed: also validation or test sentences)" if removed else "")
        task.description["teacher_labeled"] = {e.name: len(e.split) for e in extras}
    prepared = Prepared(config, task, runtime, study_teacher, logits, {}, study_metrics, formats, extras)
    _plan_layerwise(prepared)
    if "static" in config.student.family:
        _prepare_static(prepared)
    prepared.teacher_info = {**_teacher_info(prepared), "baseline": verdict}
    return prepared


def _ensemble_line(t: teachers.Teacher) -> str:
    return f"the mean of {'probabilities' if t.how == 'probabilities' else 'logits'}"


def _primary_score(split_metrics: dict, task: data.Task) -> str:
    name = task.kind.default_objective
    value = (split_metrics.get("validation") or {}).get(name)
    return f"{name} {value:.4f}" if isinstance(value, (int, float)) else "-"


def _plan_layerwise(p: Prepared) -> None:
    """The layer-wise losses' checks, and the cache of the teacher's states they read (searcher.search.layerwise)."""
    if not p.config.distill.layer_wise:
        return
    model, tokenizer = p.teacher_model()
    needs, settings = layerwise.check(p.config, p.teacher_config, model, tokenizer)
    encoded = p.encoded(tokenizer)
    row_sets = [teacher_hidden.TokenizedRows("train", encoded["train"], f"{p.task.fingerprint}:train")]
    row_sets += [teacher_hidden.TokenizedRows(e.name, encoded[e.name], e.content) for e in p.extras]
    p.layerwise = layerwise.plan(p.config, needs, row_sets, lambda: p.teacher_model()[0], p.primary.identity,
                                 tokens.tokenizer_fingerprint(tokenizer), int(p.teacher_config.hidden_size),
                                 p.runtime)
    p.layerwise.settings = settings
    # the cached path recomputes the teacher's queries, keys and values from its states: keep those projections
    # (a few small matrices), so the teacher itself can leave memory
    import copy

    for layer in needs.attention:
        p._projections[layer] = tuple(copy.deepcopy(m).to(p.runtime.device).eval().requires_grad_(False)
                                      for m in model_outputs.projections(model, layer))


def _mask_token(config: StudyConfig, primary: Optional[teachers.Teacher]) -> Optional[str]:
    """The teacher tokenizer's mask token, which augmented copies use (only loaded when the study augments)."""
    if not transfer.max_copies(config) or primary is None:
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(primary.directory).mask_token


def _teacher_info(p: Prepared) -> dict:
    """What the records and the card say of the teacher: every member's facts and metrics (an ensemble's too) and
    its latency (an ensemble runs every member: their times add up)."""
    info = p.teacher.describe()
    info["metrics"] = p.logits.metrics
    if p.config.train.latency:
        timed = [_teacher_latency(p, m) for m in p.teacher.members]
        for m_info, t in zip(info.get("members", []), timed):
            if t is not None:
                m_info["latency_ms"] = t
        if all(t is not None for t in timed):
            info["latency_ms"] = timed[0] if len(timed) == 1 else {
                "single_median": round(sum(t["single_median"] for t in timed), 3),
                "throughput_per_s": round(1 / sum(1 / t["throughput_per_s"] for t in timed), 1),
                **{k: v for k, v in timed[0].items() if k not in ("single_median", "throughput_per_s")},
            }
    for member in p.teacher.members:
        if member is not p.primary:
            member.release()  # only the primary teacher's layers and tokenizer are read during trials
    if not p.config.student.needs_teacher_model and not p.layerwise.online:
        p.teacher.release()  # pretrained students never need the teacher in memory (nor the cached layer-wise path)
    return info


def _teacher_latency(p: Prepared, t: teachers.Teacher) -> Optional[dict]:
    """Measured once per (teacher, data, machine) and cached: BERT-base takes ~10-20 s to time on 2 cores. A causal
    LM teacher is not timed (its cost is one pass per label, not a classifier's)."""
    import torch

    from searcher.records import latency
    from searcher.teachers import loading as teacher_loading

    if t.type != "classifier":
        return None
    key = files.cache_key([teacher_loading.identity(t.directory), p.task.fingerprint, platform.node(),
                           torch.get_num_threads()], 20)
    path = p.config.cache_dir / "latency" / f"{key}.json"

    def read() -> Optional[dict]:
        if not path.is_file():
            return None
        found = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(found, dict) or not all(isinstance(found.get(k), (int, float)) and found[k] > 0
                                                  for k in ("single_median", "throughput_per_s")):
            raise ValueError("its timings are missing")
        return found

    def build() -> dict:
        model, tokenizer = t.model()
        result = latency.measure(model, p.encoded(tokenizer)["validation"])
        files.write_text(path, json.dumps(result))
        return result

    return files.cached("teacher latency cache", path, read, build, log)
