"""The study's teacher as an object: one classifier, a causal LM with a prompt, or an ensemble of them.

- `_base`: the `Teacher` interface (identity, label order, checks, cached logits, description) and `Where`;
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
from searcher.teachers._base import Teacher, Where
from searcher.teachers._causal_lm import CausalLMTeacher
from searcher.teachers._classifier import ClassifierTeacher
from searcher.teachers._ensemble import Ensemble, combine

TYPES = {"classifier": ClassifierTeacher, "causal_lm": CausalLMTeacher, "ensemble": Ensemble}

__all__ = ["TYPES", "Teacher", "Where", "ClassifierTeacher", "CausalLMTeacher", "Ensemble", "combine", "build",
           "where_of"]


def where_of(config: StudyConfig, runtime: Runtime) -> Where:
    return Where(config.cache_dir, config.data.max_length, config.teacher.inference_batch_size, runtime)


def build(config: StudyConfig, runtime: Runtime) -> Teacher:
    """The study's teacher (nothing loaded yet: `model_config`, `check` and `ready` do that, in that order)."""
    where = where_of(config, runtime)
    members = teacher_members(config)
    several = len(members) > 1
    built: list[Teacher] = []
    for m in members:
        source = locate_source(config.resolve_model(m.model or m.base))
        if m.causal_lm:
            built.append(CausalLMTeacher(m, source, where))
        else:
            seed = config.study.seed if m.seed is None else m.seed
            built.append(ClassifierTeacher(m, source, seed, where, map_labels=several))
    if not several:
        return built[0]
    return Ensemble(built, [m.weight for m in members], config.teacher.combine, config.teacher.layer_wise, where,
                    searched=config.teacher.search_weights)
