"""The promises every teacher keeps (searcher.teachers: each registered kind, and the ensemble), as one importable
test class.

Subclass `TeacherPromises` and give it a `teacher_config` fixture: a callable `(directory) -> StudyConfig` that
writes (or reads) a study taught by the teacher under test into `directory`, on tiny data and a tiny model. Two calls
with different directories must give the same teacher and the same [study] cache_dir: the second teacher is checked
to read what the first cached, without running any model.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest


def build(config):
    from searcher import teachers
    from searcher.train import runtime

    return teachers.build(config, runtime.resolve("cpu", "off"))


def readied(config, task=None):
    """The study's teacher, checked against its task and ready (the task read in its label order when not given)."""
    from searcher import data

    t = build(config)
    t.model_config()
    task = task or data.load_task(config, label_order=t.label_order())
    t.check(task)
    t.ready(task)
    return t, task


class TeacherPromises:
    """Needs a `teacher_config` fixture: `(directory) -> StudyConfig` of a study taught by the teacher under test."""

    @pytest.fixture
    def teacher_config(self):
        raise NotImplementedError("give the test class a teacher_config fixture: (directory) -> StudyConfig")

    def test_each_member_is_a_registered_kind_with_its_settings(self, teacher_config, tmp_path):
        from searcher import teachers
        from searcher.config import teacher_members

        config = teacher_config(tmp_path / "declared")
        for member, built in zip(teacher_members(config), build(config).members):
            kind = teachers.TYPES.get(member.type)
            assert kind is not None and type(built) is kind, "register the kind in searcher.teachers.TYPES"
            assert dataclasses.is_dataclass(kind.Settings) and kind.Settings.__dataclass_params__.frozen
            assert isinstance(member.settings, kind.Settings) and kind.title and kind.selected_by

    def test_gives_cached_logits_of_the_tasks_labels_and_reads_them_back(self, teacher_config, tmp_path,
                                                                          monkeypatch):
        import torch

        config = teacher_config(tmp_path / "first")
        t, task = readied(config)
        first = t.identity
        assert isinstance(first, str) and len(first) == 20
        logits = t.logits(task)
        for name, split in task.splits().items():
            a = logits.splits[name]
            assert a.shape == (len(split), task.kind.width(task.label_names)) and np.isfinite(a).all()
        assert {"cross_entropy", task.kind.default_objective} <= set(logits.metrics["validation"])
        assert t.metrics == logits.metrics

        # a second teacher object of the same study reads the cache: no model runs (of any kind), the same numbers
        forward = []
        real = torch.nn.Module.__call__
        monkeypatch.setattr(torch.nn.Module, "__call__", lambda self, *a, **k: forward.append(type(self).__name__)
                            or real(self, *a, **k))
        again, _ = readied(teacher_config(tmp_path / "again"), task)
        assert again.identity == first
        assert np.array_equal(again.logits(task).splits["train"], logits.splits["train"])
        assert not forward, f"the second teacher ran {forward[:3]} instead of reading the cache"
        monkeypatch.undo()

        # rows only it labels: float16, computed once, close to its logits of the same rows
        extra = t.extra_logits("transfer", task.validation.subset(range(7)), "seven-rows")
        assert extra.dtype == np.float16 and extra.shape == (7, logits.splits["validation"].shape[1])
        assert np.allclose(extra.astype(np.float32), logits.splits["validation"][:7], atol=2e-2)
        info = t.describe()
        json.dumps(info)  # records store it as JSON
        assert info["type"] == t.type and info["params"] > 0 and info["metrics"] == logits.metrics
