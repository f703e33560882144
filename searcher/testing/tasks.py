"""The promises every task kind keeps (searcher.tasks.TaskKind), as one importable test class.

Subclass `TaskKindPromises` and give it a `kind_class` fixture (the TaskKind subclass) and a `raw_labels` fixture:
{"train": [...], "validation": [...]}, label values as a data file gives them (at least two rows each). It checks
the declarations, reading labels and marking rows only the teacher labels, the logit loss's terms (summed over
examples, the label term left out for unlabelled rows), predictions and metrics, parity, the constant baseline, how
several teachers combine, and what the card says of the kind.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

DATA = SimpleNamespace(label_column="label", label_names=None, label_delimiter=",")  # the [data] keys a kind reads


def logits_for(n: int, width: int, seed: int = 0):
    import torch

    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, width)).astype(np.float32))


class TaskKindPromises:
    """Needs `kind_class` (a TaskKind subclass) and `raw_labels` ({split: raw label values}) fixtures."""

    @pytest.fixture
    def kind_class(self):
        raise NotImplementedError("give the test class a kind_class fixture")

    @pytest.fixture
    def raw_labels(self):
        raise NotImplementedError("give the test class a raw_labels fixture: {split: label values as a file has them}")

    @pytest.fixture
    def kind(self, kind_class):
        return kind_class()

    @pytest.fixture
    def read(self, kind, raw_labels):
        names, labels = kind.read_labels(raw_labels, DATA, None, None)
        return names, labels, kind.width(names)

    def test_declares_what_it_is(self, kind_class):
        from searcher import tasks

        assert tasks.KINDS.get(kind_class.name) is kind_class, "register it in searcher.tasks.KINDS"
        assert kind_class.title and kind_class.problem_type and kind_class.label_loss_title
        assert kind_class.baseline_title and kind_class.pipeline_tag and kind_class.pipeline_title
        assert kind_class.default_objective in kind_class.metrics
        assert set(kind_class.directions) == set(kind_class.metrics)
        assert set(kind_class.directions.values()) <= {"maximize", "minimize"}

    def test_reads_labels_and_marks_rows_only_the_teacher_labels(self, kind, raw_labels, read):
        names, labels, width = read
        for split, values in labels.items():
            assert len(values) == len(raw_labels[split]) and values.shape[1:] == kind.label_shape(width)
            assert kind.labeled(values).all()
        none = kind.unlabeled(3, width)
        assert none.shape == (3, *kind.label_shape(width)) and not kind.labeled(none).any()

    def test_logit_terms_are_summed_and_skip_the_label_term_of_unlabelled_rows(self, kind, read):
        import torch

        _, labels, width = read
        none = kind.unlabeled(3, width)
        y = torch.from_numpy(np.concatenate([labels["train"], none]))
        s, t = logits_for(len(y), width, 1), logits_for(len(y), width, 2)
        whole = kind.kd(s, t, y, 0.3, 2.0)
        assert torch.isfinite(whole) and whole > 0
        parts = kind.kd(s[:2], t[:2], y[:2], 0.3, 2.0) + kind.kd(s[2:], t[2:], y[2:], 0.3, 2.0)
        assert torch.allclose(whole, parts, rtol=1e-5)
        n = len(labels["train"])
        assert torch.allclose(kind.kd(s[n:], t[n:], y[n:], 1.0, 2.0), torch.tensor(0.0))  # no label: nothing at 1
        assert torch.allclose(kind.kd(s, None, y, 0.3, 2.0), kind.kd(s, t, y, 1.0, 2.0))

    def test_predictions_metrics_parity_and_baseline(self, kind, read):
        _, labels, width = read
        n = len(labels["train"])
        s = logits_for(n, width, 1).numpy()
        out = kind.scores(s, labels["train"])
        assert set(out) == set(kind.metrics) and all(type(v) is float and math.isfinite(v) for v in out.values())
        assert kind.parity(s, s.copy(), 1e-4)["ok"]
        assert not kind.parity(s, s + 1.0, 1e-4)["ok"]
        # the constant baseline a teacher must beat: every built-in metric, a plain float
        base = kind.baseline(labels["train"], labels["validation"])
        assert set(base) == set(kind.metrics) and all(type(v) is float and math.isfinite(v) for v in base.values())

    def test_combines_teachers_and_says_its_threshold(self, kind, read):
        from searcher.teachers import combine

        width = read[2]
        one = np.random.default_rng(0).normal(size=(4, width)).astype(np.float32)
        assert np.allclose(combine([one, one], np.array([0.25, 0.75]), "logits", kind), one, atol=1e-5)
        assert np.array_equal(combine([one, one], np.array([0.5, 0.5]), "logits", kind.name),
                              combine([one, one], np.array([0.5, 0.5]), "logits", kind))
        mixed = combine([one, one], np.array([0.5, 0.5]), "probabilities", kind)
        assert mixed.shape == one.shape and np.isfinite(mixed).all()
        # teachers that agree keep their choice, whatever the kind averages
        assert np.array_equal(kind.predict(mixed), kind.predict(one))
        assert (kind.threshold_text(None) is not None) == kind.uses_threshold
