"""The error classes searcher raises.

Every error a user can cause derives from `SearcherError` and says in one line what is wrong and how to get out.
Only the CLI prints them; library code raises and chains (`raise ... from e`).
"""

from __future__ import annotations

from searcher import redact


class SearcherError(Exception):
    """Root of every error searcher raises on purpose."""


class ConfigError(SearcherError, ValueError):
    """The study file (or a flag) is wrong: unknown key, wrong type, impossible range."""


class DataError(SearcherError, ValueError):
    """The data cannot be loaded or does not fit the study file (missing file, column or label)."""


class TeacherError(SearcherError, ValueError):
    """The teacher cannot be loaded or does not fit the data (label count, missing model)."""


class StudentError(SearcherError, ValueError):
    """A student cannot be built from the grid or checkpoint list."""


class StudyError(SearcherError, LookupError):
    """The study, trial or checkpoint asked for does not exist or is not in a usable state."""


class PublishError(SearcherError):
    """Publishing to the Hub failed or cannot start (no token, server keeps failing)."""


class RefusedError(SearcherError, ValueError):
    """Doing what was asked would be unsafe or make a record untrue (publish privately into a public repo, delete
    files searcher did not write); nothing was done."""


class ExportError(SearcherError):
    """A model cannot be exported to ONNX or quantized, or onnx/onnxruntime are not installed."""


class NonFiniteLossError(SearcherError, ArithmeticError):
    """The training loss became NaN or infinite; the trial is pruned with this reason."""


class SurplusTrial(SearcherError):
    """Another worker reached the study's n_trials first; this trial is closed without training."""


class ExportFailed(SearcherError):
    """The study is optimized on a deployed form, and this trial's export failed: it fails with the reason."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message: enough to say what failed, without a wall of text. Redacted
    (searcher.redact): the message may be a server's or a driver's, quoting a token or a URL with its password."""
    lines = str(error).strip().splitlines()
    return redact.text(lines[0]) if lines else type(error).__name__


class RecipeError(SearcherError, ValueError):
    """A source holds no recipe searcher can read, or the imported blocks would break the study file."""
