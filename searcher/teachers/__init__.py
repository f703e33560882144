"""The study's teacher as an object: one classifier, a causal LM with a prompt, or an ensemble of them.

- `_base`: the `Teacher` interface (identity, label order, checks, cached logits, description) and `TeacherCompute` (what they compute with);
- `_classifier`: a fine-tuned classifier, or a base fine-tuned once (per seed: a seed ensemble);
- `_causal_lm`: a causal language model's verbalizer log-probabilities after a prompt;
- `_ensemble`: several teachers' logits or probabilities averaged, with fixed weights or a trial's searched ones.

`build(config, runtime)` makes it from the study file's teachers ([teacher], its seeds, or [[teachers]]); the
preparation stage (searcher.search.prepare) readies it once and every later stage takes it.
"""

from __future__ import annotations

from searcher.config import StudyConfig, teacher_members
from searcher.train.runtime import Runtime
from searcher.teachers.loading import locate_source
from searcher.teachers._base import Settings, Teacher, TeacherCompute, Where
from searcher.teachers._causal_lm import CausalLMTeacher
from searcher.teachers._classifier import ClassifierTeacher
from searcher.teachers._ensemble import Ensemble, combine

# the kinds a [teacher] / [[teachers]] table can be, by the `type` it names (or its keys select); the first that
# selects a table wins, and a table that no kind selects is a DEFAULT one
TYPES: dict[str, type[Teacher]] = {cls.type: cls for cls in (
    ClassifierTeacher,
    CausalLMTeacher,
)}
DEFAULT = "classifier"

__all__ = ["TYPES", "DEFAULT", "Settings", "Teacher", "TeacherCompute", "Where", "ClassifierTeacher",
           "CausalLMTeacher", "Ensemble", "combine", "build", "compute_of", "where_of"]


def compute_of(config: StudyConfig, runtime: Runtime) -> TeacherCompute:
    return TeacherCompute(config.cache_dir, config.data.max_length, config.teacher.inference_batch_size, runtime)


where_of = compute_of  # its name before issue 28


def build(config: StudyConfig, runtime: Runtime) -> Teacher:
    """The study's teacher (nothing loaded yet: `model_config`, `check` and `ready` do that, in that order)."""
    compute = compute_of(config, runtime)
    members = teacher_members(config)
    several = len(members) > 1
    built: list[Teacher] = []
    for m in members:
        source = locate_source(config.resolve_model(m.model or m.base))
        built.append(TYPES[m.type].from_member(m, source, compute, config, several))
    if not several:
        return built[0]
    return Ensemble(built, [m.weight for m in members], config.teacher.combine, config.teacher.layer_wise, compute,
                    searched=config.teacher.search_weights)
