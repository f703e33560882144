"""Each seam's promises as importable test classes, laid out as optuna's `optuna.testing.pytest_samplers`: subclass
one in a test module and give it the fixture its docstring names (the implementation, and what it runs on).
searcher's own tests run them over every registered implementation (tests/test_losses.py, test_tasks.py,
test_teachers.py, test_trackers.py); a user's own loss, task kind, teacher kind or tracker is held to the same checks:

    from searcher.testing.losses import LossPromises

    class TestMyLoss(LossPromises):
        @pytest.fixture
        def loss_class(self):
            return MyLoss

- `losses`: `LossPromises` (searcher.losses.DistillationLoss);
- `tasks`: `TaskKindPromises` (searcher.tasks.TaskKind);
- `teachers`: `TeacherPromises` (searcher.teachers.Teacher kinds, and the ensemble);
- `trackers`: `TrackerDeclarations` (no client needed) and `TrackerPromises` (against the tracker's real store).

These modules import pytest (and torch, inside tests); nothing else in searcher imports them.
"""
