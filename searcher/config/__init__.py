"""The study file: frozen, validated configuration read once from TOML.

- `schema`: one frozen dataclass per section and the whole `StudyConfig` (shapes and defaults only);
- `parse`: TOML into those dataclasses, every key and type checked (`load_study`, `parse_study`);
- `rules`: the checks between fields, run once after parsing;
- `identity`: the resolved study as stored data, and the settings that define its trials.

Nothing downstream ever sees a half-valid config: every error is a `ConfigError` naming the file, the key and the
fix. This package must not import torch, transformers or optuna: `searcher --help` and config errors stay instant.
"""

from searcher.config.identity import FREE, FREE_SECTIONS, changed_settings, defining, resolved_dict
from searcher.config.parse import load_study, parse_study, tomllib
from searcher.config.rules import teacher_members
from searcher.config.schema import (CACHE_ENV, DEFAULT_CHECKPOINT, EXPORT_FORMATS, PRUNER_OPTIONS, SAFE_NAME,
                                    SAMPLER_OPTIONS, SECTIONS, STORAGE_ENV, AugmentConfig, CardSection, DataSection,
                                    ExportSection, FineTuneConfig, HubSection, MetricsSection, PrunerConfig,
                                    ReportSection, SamplerConfig, SearchSection, StopConfig, StudentSection,
                                    StudyConfig, StudySection, TeacherMember, TeacherSection, TrainSection)
from searcher.errors import ConfigError
from searcher.hyperparams import Choices, Dimension, Fixed, FloatRange, IntRange

__all__ = [
    "teacher_members", "FREE", "FREE_SECTIONS", "changed_settings", "defining", "resolved_dict", "load_study", "parse_study", "tomllib",
    "CACHE_ENV", "DEFAULT_CHECKPOINT", "EXPORT_FORMATS", "PRUNER_OPTIONS", "SAFE_NAME", "SAMPLER_OPTIONS",
    "SECTIONS", "STORAGE_ENV", "AugmentConfig", "CardSection", "DataSection", "ExportSection", "FineTuneConfig",
    "HubSection", "MetricsSection", "PrunerConfig", "ReportSection", "SamplerConfig", "SearchSection", "StopConfig",
    "StudentSection", "StudyConfig", "StudySection", "TeacherMember", "TeacherSection", "TrainSection", "ConfigError", "Choices",
    "Dimension", "Fixed", "FloatRange", "IntRange",
]
