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
from searcher.data import Task
from searcher.errors import StudentError, first_line
from searcher.teacher import load_classifier, shape


@dataclass(frozen=True)
class StudentSpec:
    """Which student a trial trains. For a checkpoint list, layers/hidden/heads are read from its config."""

    init: str  # pretrained | teacher | random
    layers: Optional[int] = None
    hidden: Optional[int] = None
    checkpoint: Optional[str] = None

    @property
    def heads(self) -> Optional[int]:
        return self.hidden // 64 if self.hidden else None


def grid_checkpoint(config: StudyConfig, layers: int, hidden: int) -> str:
    return config.student.checkpoint.format(layers=layers, hidden=hidden, heads=hidden // 64)


def spec_for(config: StudyConfig, layers: Optional[int] = None, hidden: Optional[int] = None,
             checkpoint: Optional[str] = None, init: Optional[str] = None) -> StudentSpec:
    st = config.student
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


def build(spec: StudentSpec, task: Task, teacher=None, teacher_tokenizer=None, seed: int = 0):
    """(model, tokenizer) for a spec. `teacher` and `teacher_tokenizer` are needed for init teacher/random."""
    import torch
    from transformers import AutoModelForSequenceClassification, BertConfig

    labels = {"num_labels": task.num_labels, "id2label": task.id2label, "label2id": task.label2id}
    torch.manual_seed(seed)  # the new classifier head (and a random student) start the same for the same seed
    if spec.init == "pretrained":
        try:
            return load_classifier(spec.checkpoint, ignore_mismatched_sizes=True, **labels)
        except Exception as e:
            raise StudentError(f"cannot load student checkpoint {spec.checkpoint!r}: {first_line(e)}; check the id "
                               f"(and network or HF_HUB_OFFLINE cache) or use init = \"teacher\"/\"random\"") from e

    if teacher is None or teacher_tokenizer is None:
        raise StudentError(f"init = {spec.init!r} needs the teacher and its tokenizer")
    tcfg = teacher.config
    if spec.init == "random":
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
        return AutoModelForSequenceClassification.from_config(cfg), teacher_tokenizer

    # init == "teacher": same shape per layer, fewer layers, weights copied from the teacher
    t_layers = int(getattr(tcfg, "num_hidden_layers", 0))
    t_hidden = int(getattr(tcfg, "hidden_size", 0))
    if spec.hidden is not None and spec.hidden != t_hidden:
        raise StudentError(f"init = \"teacher\" copies the teacher's layers, so hidden must be the teacher's "
                           f"{t_hidden}, got {spec.hidden}; set [student] hidden = [{t_hidden}] or init = \"random\"")
    keep = evenly_spread(t_layers, int(spec.layers))
    cfg = copy.deepcopy(tcfg)
    cfg.num_hidden_layers = int(spec.layers)
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
    state = {k: v for k, v in state.items() if k in target and target[k].shape == v.shape}
    missing = [k for k in target if k not in state and not k.startswith("classifier")]
    if missing:
        raise StudentError(f"cannot copy the teacher's layers into the student: {len(missing)} weights have no "
                           f"counterpart (e.g. {missing[0]}); init = \"teacher\" supports BERT-like teachers")
    model.load_state_dict(state, strict=False)
    return model, teacher_tokenizer


def describe(model, spec: StudentSpec) -> dict:
    """L/H/A, parameters and origin of a built student (JSON-safe)."""
    return {**shape(model), "init": spec.init, "checkpoint": spec.checkpoint,
            "model_type": str(getattr(model.config, "model_type", ""))}

