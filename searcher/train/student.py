"""Student stage: build one student from the BERT-miniatures grid or a checkpoint list.

init = "pretrained": the grid's Hub checkpoint (google/bert_uncased_L-{layers}_H-{hidden}_A-{heads}) or a listed one;
init = "teacher": the teacher's embeddings and evenly spread layers (DistilBERT's recipe; needs the teacher's hidden);
init = "random": a fresh BERT of that shape. "teacher" and "random" use the teacher's tokenizer and download nothing.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Optional

from searcher.config import StudyConfig
from searcher.data.loading import Task
from searcher.errors import StudentError, first_line
from searcher.train.models import load_classifier, shape


@dataclass(frozen=True)
class StudentSpec:
    """Which student a trial trains. For a checkpoint list, layers/hidden/heads are read from its config."""

    init: str  # pretrained | teacher | random (family "bert"); "static" for the static family
    layers: Optional[int] = None
    hidden: Optional[int] = None
    checkpoint: Optional[str] = None
    family: str = "bert"  # bert | static (searcher.train.static)
    static_dim: Optional[int] = None
    static_train_embeddings: Optional[bool] = None
    static_head: Optional[str] = None

    @property
    def static(self) -> bool:
        return self.family == "static"


def grid_checkpoint(config: StudyConfig, layers: int, hidden: int) -> str:
    return config.student.checkpoint.format(layers=layers, hidden=hidden, heads=hidden // 64)


def spec_for(config: StudyConfig, layers: Optional[int] = None, hidden: Optional[int] = None,
             checkpoint: Optional[str] = None, init: Optional[str] = None, family: Optional[str] = None,
             static_dim: Optional[int] = None, static_train_embeddings: Optional[bool] = None,
             static_head: Optional[str] = None) -> StudentSpec:
    st = config.student
    if (family or st.family[0]) == "static":
        return StudentSpec("static", family="static", static_dim=int(static_dim),
                           static_train_embeddings=bool(static_train_embeddings), static_head=str(static_head))
    if st.checkpoints is not None:
        return StudentSpec(init="pretrained", checkpoint=checkpoint)
    init = init or st.init[0]
    if init == "pretrained":
        return StudentSpec("pretrained", layers, hidden, config.resolve_model(grid_checkpoint(config, layers, hidden)))
    if init == "teacher":
        return StudentSpec("teacher", layers, None)  # the teacher's hidden size
    return StudentSpec(init, layers, hidden)


def evenly_spread(teacher_layers: int, student_layers: int) -> list[int]:
    """Which teacher layers a student of `student_layers` copies: spread evenly, always ending at the top layer
    (12 -> 6 gives 1, 3, 5, 7, 9, 11: DistilBERT's every-other-layer choice)."""
    if student_layers > teacher_layers:
        raise StudentError(f"a student of {student_layers} layers cannot be initialised from a teacher of "
                           f"{teacher_layers} layers; use layers <= {teacher_layers} or init = \"random\"")
    return [round((i + 1) * teacher_layers / student_layers) - 1 for i in range(student_layers)]


LAYER_KEY = re.compile(r"^(.*\.layers?\.)(\d+)(\..*)$")


def first_layer_differs(state_names: list[str]) -> bool:
    """Whether a model's first layer has other weights than the next (ModernBERT's layer 0 has no attention norm:
    the embeddings are normed already), so that only the teacher's own first layer fits a student's first layer."""
    by_layer: dict[int, set] = {}
    for name in state_names:
        m = LAYER_KEY.match(name)
        if m:
            by_layer.setdefault(int(m.group(2)), set()).add(m.group(1) + "#" + m.group(3))
    return 0 in by_layer and 1 in by_layer and by_layer[0] != by_layer[1]


def teacher_layers(teacher_layers: int, student_layers: int, keep_first: bool = False) -> list[int]:
    """The teacher layers a teacher-initialised student copies: evenly spread (DistilBERT), or, when the first layer
    is built differently from the rest (`keep_first`), the teacher's first layer and the others spread evenly
    over the remaining layers, so every copied weight has its place."""
    if not keep_first or student_layers == 1 or student_layers > teacher_layers:
        if keep_first and student_layers == 1:
            return [0]
        return evenly_spread(teacher_layers, student_layers)
    return [0] + [1 + i for i in evenly_spread(teacher_layers - 1, student_layers - 1)]


def build(spec: StudentSpec, task: Task, teacher=None, teacher_tokenizer=None, seed: int = 0,
          hidden_dropout: Optional[float] = None, head_order=None):
    """(model, tokenizer) for a spec. `teacher` and `teacher_tokenizer` are needed for init teacher/random.
    `hidden_dropout` sets the student's dropout on hidden states (None keeps the checkpoint's or teacher's).
    `head_order`: which of the teacher's outputs is each of the task's labels, when the teacher orders them otherwise
    (a teacher-initialised student's copied head is put in the task's order)."""
    import torch

    labels = {"num_labels": task.num_labels, "id2label": task.id2label, "label2id": task.label2id,
              "problem_type": task.kind.problem_type}
    torch.manual_seed(seed)  # the new classifier head (and a random student) start the same for the same seed
    if spec.init == "pretrained":
        try:
            model, tokenizer = load_classifier(spec.checkpoint, ignore_mismatched_sizes=True, **labels)
        except Exception as e:
            raise StudentError(f"cannot load student checkpoint {spec.checkpoint!r}: {first_line(e)}; check the id "
                               f"(and network or HF_HUB_OFFLINE cache) or use init = \"teacher\"/\"random\"") from e
    else:
        if teacher is None or teacher_tokenizer is None:
            raise StudentError(f"init = {spec.init!r} needs the teacher and its tokenizer")
        if spec.init == "random":
            model = _random(spec, teacher, teacher_tokenizer, labels)
        else:
            model = _from_teacher(spec, teacher, teacher_tokenizer, labels, head_order)
        tokenizer = teacher_tokenizer
    if hidden_dropout is not None:
        set_dropout(model, hidden_dropout)
    return model, tokenizer


def set_dropout(model, p: float) -> None:
    """The student's dropout on hidden states, in its config (so a saved student keeps it) and in its modules.
    BERT-like configs call it hidden_dropout_prob, DistilBERT's `dropout`, ModernBERT's mlp_dropout and
    embedding_dropout."""
    import torch

    if hasattr(model.config, "mlp_dropout") and hasattr(model.config, "embedding_dropout"):
        # ModernBERT: dropout on hidden states is its embeddings' and MLP outputs' (attention and head have their own)
        model.config.mlp_dropout = model.config.embedding_dropout = float(p)
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Dropout) and name.endswith(("embeddings.drop", "mlp.drop")):
                module.p = float(p)
        return
    key = "hidden_dropout_prob" if hasattr(model.config, "hidden_dropout_prob") else "dropout"
    if not hasattr(model.config, key):
        raise StudentError(f"{type(model).__name__} has no hidden dropout setting; remove [search] hidden_dropout")
    setattr(model.config, key, float(p))
    for name, module in model.named_modules():
        # attention dropout has its own setting (attention_probs_dropout_prob) and stays as it is
        attention = "attention.self" in name or name.endswith(("attention.dropout", "attn.dropout"))
        if isinstance(module, torch.nn.Dropout) and not attention:
            module.p = float(p)


def _random(spec: StudentSpec, teacher, teacher_tokenizer, labels: dict):
    from transformers import AutoModelForSequenceClassification, BertConfig

    tcfg = teacher.config
    cfg = BertConfig(
        vocab_size=int(len(teacher_tokenizer)),
        hidden_size=int(spec.hidden),
        num_hidden_layers=int(spec.layers),
        num_attention_heads=int(spec.hidden // 64),
        intermediate_size=int(4 * spec.hidden),
        max_position_embeddings=int(getattr(tcfg, "max_position_embeddings", 512)),
        type_vocab_size=int(getattr(tcfg, "type_vocab_size", 2)),
        pad_token_id=int(teacher_tokenizer.pad_token_id or 0),
        **labels,
    )
    return AutoModelForSequenceClassification.from_config(cfg)


def _from_teacher(spec: StudentSpec, teacher, teacher_tokenizer, labels: dict, head_order=None):
    """Same shape per layer, fewer layers, weights copied from the teacher's evenly spread layers."""
    from transformers import AutoModelForSequenceClassification

    tcfg = teacher.config
    t_layers = int(getattr(tcfg, "num_hidden_layers", 0))
    t_hidden = int(getattr(tcfg, "hidden_size", 0))
    if spec.hidden is not None and spec.hidden != t_hidden:
        raise StudentError(f"init = \"teacher\" copies the teacher's layers, so hidden must be the teacher's "
                           f"{t_hidden}, got {spec.hidden}; set [student] hidden = [{t_hidden}] or init = \"random\"")
    state_names = list(teacher.state_dict())
    keep = teacher_layers(t_layers, int(spec.layers), first_layer_differs(state_names))
    cfg = copy.deepcopy(tcfg)
    cfg.num_hidden_layers = int(spec.layers)
    if isinstance(getattr(tcfg, "layer_types", None), (list, tuple)) and len(tcfg.layer_types) == t_layers:
        # each copied layer keeps its attention kind (ModernBERT: global or sliding-window), which its weights and
        # rotary settings were trained for; a pattern recomputed from global_attn_every_n_layers would not match
        cfg.layer_types = [tcfg.layer_types[i] for i in keep]
    for k, v in labels.items():
        setattr(cfg, k, v)
    model = AutoModelForSequenceClassification.from_config(cfg)
    remap = {old: new for new, old in enumerate(keep)}
    state = {}
    for name, tensor in teacher.state_dict().items():
        m = LAYER_KEY.match(name)
        if m:
            old = int(m.group(2))
            if old not in remap:
                continue
            name = f"{m.group(1)}{remap[old]}{m.group(3)}"
        state[name] = tensor
    target = model.state_dict()
    unplaced = [k for k, v in state.items() if LAYER_KEY.match(k) and (k not in target or target[k].shape != v.shape)]
    if unplaced:
        raise StudentError(f"cannot copy the teacher's layers into the student: the teacher's {unplaced[0]} has no "
                           f"place in it; init = \"teacher\" supports BERT-like and ModernBERT teachers")
    if head_order is not None:  # the head's rows in the task's label order, as the teacher's logits are mapped
        order = list(head_order)
        state = {k: (v[order] if k.startswith("classifier") and v.ndim >= 1 and v.shape[0] == len(order) else v)
                 for k, v in state.items()}
    state = {k: v for k, v in state.items() if k in target and target[k].shape == v.shape}
    missing = [k for k in target if k not in state and not k.startswith(("classifier", "head"))]
    if missing:
        raise StudentError(f"cannot copy the teacher's layers into the student: {len(missing)} weights have no "
                           f"counterpart (e.g. {missing[0]}); init = \"teacher\" supports BERT-like teachers")
    model.load_state_dict(state, strict=False)
    return model


def describe(model, spec: StudentSpec) -> dict:
    """L/H/A, parameters and origin of a built student (JSON-safe); a static student's own settings too."""
    out = {**shape(model), "init": spec.init, "checkpoint": spec.checkpoint,
           "model_type": str(getattr(model.config, "model_type", "")), "family": spec.family}
    if spec.static:
        out.update(static_dim=spec.static_dim, static_train_embeddings=spec.static_train_embeddings,
                   static_head=spec.static_head, base=getattr(model.config, "base", None))
    return out

