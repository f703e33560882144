"""Secrets out of everything searcher stores, prints, logs or publishes.

Two kinds are caught. Passwords in URLs become ***, in both forms: `scheme://user:password@host/...` and query
arguments such as `?password=...`. And known secrets, registered with `secret()` (the Hugging Face token: the CLI
registers HF_TOKEN and the login cache's token at start, searcher.hub the token it pushes with), are replaced by ***
wherever they appear, whatever the text's source: a Hub mirror or proxy that quotes the request's Authorization
header in its error must not get the token printed, logged or stored. Tokens are never read from study files.
`Filter` does the same to log records. This module has no dependencies: the config, the storage, the errors and the
CLI all use it.
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any, Optional

USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/\s@\"']*:)([^@\s\"']+)(@)", re.IGNORECASE)  # user may be empty
QUERY = re.compile(r"([?&;](?:password|passwd|pwd|sslpassword|secret|token)=)([^&;#\s\"']+)", re.IGNORECASE)
# a shorter value would blank out ordinary words wherever they occur; Hub tokens are 37 characters
MIN_SECRET = 8

_secrets: set[str] = set()


def secret(value: Optional[str]) -> None:
    """Register a secret: from now on `text` (and so every message, log line and record) shows it as ***."""
    value = (value or "").strip()
    if len(value) >= MIN_SECRET:
        _secrets.add(value)


def text(value: str) -> str:
    """`value` with every registered secret and every URL password replaced by ***."""
    for known in sorted(_secrets, key=len, reverse=True):  # longest first: one secret may contain another
        value = value.replace(known, "***")
    return QUERY.sub(r"\1***", USERINFO.sub(r"\1***\3", value))


def deep(value: Any) -> Any:
    """A copy of plain data (dicts, lists, strings) with every string redacted."""
    if isinstance(value, str):
        return text(value)
    if isinstance(value, dict):
        return {k: deep(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [deep(v) for v in value]
    return value


class Filter(logging.Filter):
    """Redacts each record that passes, message and traceback, before any formatter sees it. Put it on a handler:
    a logger's filters see only records logged on that very logger, not those of its children (searcher.hub)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = text(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = text("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        return True
