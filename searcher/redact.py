"""Secrets out of everything searcher stores, prints or publishes: passwords in URLs become ***.

Both forms are caught: `scheme://user:password@host/...` and query arguments such as `?password=...`. Tokens are
never read from study files at all (they come from HF_TOKEN or the login cache), so they cannot leak this way.
This module has no dependencies: the config, the storage and the CLI all use it.
"""

from __future__ import annotations

import re
from typing import Any

USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/\s@\"']*:)([^@\s\"']+)(@)", re.IGNORECASE)  # user may be empty
QUERY = re.compile(r"([?&;](?:password|passwd|pwd|sslpassword|secret|token)=)([^&;#\s\"']+)", re.IGNORECASE)


def text(value: str) -> str:
    """`value` with every URL password replaced by ***."""
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
