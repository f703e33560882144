"""Before the first trial, for the layer-wise losses ([distill] losses beyond "logits"): every student the study can
build checked against the teacher (depths for the layer map, tokenizer for token-level losses, attention that can be
read, head counts), the teacher layers all of them read, and what serves those layers during trials: the cache
(searcher.teachers.hidden, within [distill] cache_budget_gb) or the teacher running beside the student.

Every check here fails before the study is created: one line, exit 2 (ConfigError).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Optional

from searcher.teachers import hidden as teacher_hidden

from searcher.train import outputs as model_outputs
from searcher.train import student as student_stage
from searcher.data import tokens
from searcher.config import StudyConfig
from searcher.errors import ConfigError, first_line
from searcher.losses import LOSSES, DistillationLoss, Side
from searcher.train.runtime import Runtime

log = logging.getLogger(__name__)

GB = 1e9


def build_losses(config: StudyConfig, fitted: Optional[dict] = None) -> list[DistillationLoss]:
    """Fresh loss objects for one trial (a projection is trained per trial), in [distill] losses order; `fitted`:
    the settings `check` chose for this study's models (TeacherLayers.settings), by loss name."""
    fitted = fitted or {}
    return [LOSSES[name](fitted.get(name) or config.distill.settings_of(name)) for name in config.distill.losses]


@dataclass
class TeacherLayers:
    """What the study's layer-wise losses read of the teacher, and where it comes from."""

    needs: Side = Side()  # the teacher's outputs, over every student the study can build
    states: Optional[dict] = None  # row set name -> {layer: float16 memmap} when cached; None: online
    online: bool = False
    cache_mb: float = 0.0  # what the cache takes (or would have taken) on disk
    reason: str = ""
    checked: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)  # loss name -> its settings, defaults fitted to the study's models

    @property
    def active(self) -> bool:
        return not self.needs.empty


def candidates(config: StudyConfig, teacher_config) -> list[tuple[str, object]]:
    """(description, config-like object) of every student shape the study can build, before any is built."""
    from transformers import AutoConfig

    st = config.student
    out = []
    if st.checkpoints is not None:
        for c in st.checkpoints:
            path = config.resolve_model(c)
            try:
                out.append((f"student checkpoint {c!r}", AutoConfig.from_pretrained(path)))
            except Exception as e:  # check_pretrained says the same for every checkpoint: keep its wording
                raise ConfigError(f"student checkpoint {c!r} cannot be loaded: {first_line(e)}") from e
        return out
    for init in st.init:
        for layers in st.layers:
            if init == "teacher":
                out.append((f"the teacher-initialised student of {layers} layers",
                            SimpleNamespace(num_hidden_layers=layers, hidden_size=teacher_config.hidden_size,
                                            num_attention_heads=model_outputs.heads_of(SimpleNamespace(
                                                config=teacher_config)), model_type=teacher_config.model_type)))
                continue
            for hidden in st.hidden or ():
                shape = SimpleNamespace(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=hidden // 64,
                                        model_type="bert")
                if init == "pretrained":
                    path = config.resolve_model(student_stage.grid_checkpoint(config, layers, hidden))
                    try:
                        shape = AutoConfig.from_pretrained(path)
                    except Exception as e:
                        raise ConfigError(f"student checkpoint {path!r} cannot be loaded: {first_line(e)}") from e
                out.append((f"the {init} student L{layers}/H{hidden}", shape))
    return out


def _tokenizer_problem(config: StudyConfig, teacher_tokenizer) -> Optional[str]:
    """The first pretrained student whose tokenizer is not the teacher's (token-level losses compare tokens)."""
    from transformers import AutoTokenizer

    st = config.student
    if st.checkpoints is not None:
        sources = [config.resolve_model(c) for c in st.checkpoints]
    elif "pretrained" in st.init:
        sources = [config.resolve_model(student_stage.grid_checkpoint(config, L, H)) for L in st.layers
                   for H in (st.hidden or ())]
    else:
        return None  # teacher and random students use the teacher's tokenizer
    want = tokens.tokenizer_fingerprint(teacher_tokenizer)
    for source in sources:
        try:
            theirs = AutoTokenizer.from_pretrained(source)
        except Exception as e:  # noqa: BLE001
            return f"student {source!r} has no tokenizer searcher can load ({first_line(e)})"
        if tokens.tokenizer_fingerprint(theirs) != want:
            return f"student {source!r} uses another tokenizer than the teacher"
    return None


def check(config: StudyConfig, teacher_config, teacher_model, teacher_tokenizer) -> tuple[Side, dict]:
    """Every student the study can build against the teacher, for every layer-wise loss; returns the teacher
    outputs they read (union over the students) and the losses' settings with the defaults that depend on the
    models fitted to all of them (one log line each). Raises ConfigError (one line) on the first problem."""
    losses = [loss for loss in build_losses(config) if loss.stage == "layers"]
    if not losses:
        return Side(), {}
    p = config.path
    token_level = [loss.name for loss in losses if loss.token_level]
    if token_level:
        problem = _tokenizer_problem(config, teacher_tokenizer)
        if problem:
            raise ConfigError(f"{p}: [distill] losses {token_level} compare the student with the teacher token by "
                              f"token, but {problem}; use init = \"teacher\" or \"random\" (the teacher's tokenizer), "
                              f"a checkpoint with the teacher's tokenizer, or the \"logits\" loss alone (which works "
                              f"across tokenizers)")
    t_layers = int(teacher_config.num_hidden_layers)
    students = candidates(config, teacher_config)
    settings = {}
    for i, loss in enumerate(losses):
        settings[loss.name], chosen = loss.fitted(teacher_config, [shape for _, shape in students])
        if chosen:
            log.info("layer-wise losses: [distill.%s] %s; set it there to choose another", loss.name, chosen)
        losses[i] = LOSSES[loss.name](settings[loss.name])
    needs = Side()
    for what, shape in students:
        s_layers = int(shape.num_hidden_layers)
        for loss in losses:
            try:
                pairs = loss.pairs(s_layers, t_layers)
                loss.check(shape, teacher_config)
            except ConfigError as e:
                raise ConfigError(f"{p}: [distill.{loss.name}] for {what}: {e}") from e
            needs = needs | loss.needs(pairs).teacher
        if any(loss.reads == "attention" for loss in losses) and getattr(shape, "model_type", "bert") not in \
                model_outputs.ATTENTION_MODELS:
            raise ConfigError(f"{p}: {what} is a {shape.model_type!r} model, whose self-attention searcher cannot "
                              f"read; the attention and MiniLM losses need one of "
                              f"{', '.join(model_outputs.ATTENTION_MODELS)}: remove them from [distill] losses")
    model_outputs.check_attention(teacher_model, sorted(needs.attention), "the teacher")
    return needs, settings


def plan(config: StudyConfig, needs: Side, row_sets: list, teacher, teacher_identity: str, tokenizer_key: str,
         width: int, runtime: Runtime) -> TeacherLayers:
    """Cache the teacher's hidden states the losses read, when they fit [distill] cache_budget_gb; otherwise the
    teacher runs beside the student (one log line says so, with the size the cache would have needed)."""
    if needs.empty:
        return TeacherLayers()
    layers = sorted(model_outputs.hidden_layers(needs))
    size = teacher_hidden.size_bytes(row_sets, layers, width)
    budget = config.distill.cache_budget_gb * GB
    if size > budget:
        reason = (f"the teacher's hidden states of layers {layers} for {sum(len(r.encoded) for r in row_sets)} rows "
                  f"would take {size / GB:.2f} GB, more than [distill] cache_budget_gb = "
                  f"{config.distill.cache_budget_gb:g}")
        log.info("layer-wise losses: %s; the teacher runs beside the student for those terms instead", reason)
        return TeacherLayers(needs, None, True, round(size / 1e6, 1), reason)
    states = {r.name: teacher_hidden.cached_states(config.cache_dir, teacher, teacher_identity, tokenizer_key,
                                                 config.data.max_length, r, layers, width, runtime,
                                                 config.teacher.inference_batch_size)
              for r in row_sets}
    return TeacherLayers(needs, states, False, round(size / 1e6, 1))
