"""searcher.errors: one root class for every error searcher raises on purpose, and the classes that live there."""

import importlib
import inspect
import pkgutil

import searcher
from searcher import errors


def searcher_modules():
    for info in pkgutil.walk_packages(searcher.__path__, prefix="searcher."):
        yield importlib.import_module(info.name)


def test_every_error_class_searcher_defines_derives_from_searcher_error():
    """The CLI turns SearcherError into one line and an exit code; a class outside that tree would surface as a
    traceback. Checked over every module, so a new module cannot add one unnoticed."""
    defined = [cls for module in searcher_modules() for _, cls in inspect.getmembers(module, inspect.isclass)
               if issubclass(cls, BaseException) and cls.__module__ == module.__name__]
    assert len(defined) >= 10  # the walk found the package's error classes, not an empty list
    assert [f"{c.__module__}.{c.__name__}" for c in defined if not issubclass(c, errors.SearcherError)] == []


def test_the_trial_errors_live_in_errors_and_are_the_same_classes_where_they_are_raised():
    from searcher.search import objective
    from searcher.run import optimize

    for name in ("SurplusTrial", "ExportFailed"):
        cls = getattr(errors, name)
        assert cls.__module__ == "searcher.errors" and issubclass(cls, errors.SearcherError)
        assert getattr(objective, name) is cls  # raised there
        assert cls in optimize.TRIAL_ERRORS  # caught there: the trial fails, the worker goes on
