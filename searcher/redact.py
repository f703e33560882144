"""Secrets out of everything searcher stores, prints, logs or publishes.

Two kinds are caught. Passwords in URLs become ***, in both forms: `scheme://user:password@host/...` and every
credential-like parameter of a query or fragment (`?password=`, `?access_token=`, `#id_token=`, `&X-Amz-Signature=`,
`?apiKey=`, ...: by its name's words, any case or spelling, percent-encoded, and in a URL quoted inside another's
parameter, once or twice). And known secrets, registered with `secret()` (the Hugging Face token: the CLI
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
from urllib.parse import unquote

USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/\s@\"']*:)([^@\s\"']+)(@)", re.IGNORECASE)  # user may be empty
# name=value after ? & ; or # (or those and = percent-encoded, once or twice: a URL quoted inside another's parameter)
_SEP = r"(?:[?&;#]|%(?:25)*(?:3[fFbB]|26|23))"
_NOT_SEP = r"%(?!(?:25)*(?:3[dDfFbB]|26|23))[0-9A-Fa-f]{2}"
QUERY = re.compile(rf"({_SEP})((?:[^=&;#?%\s\"'<>]|{_NOT_SEP})+)(=|%(?:25)*3[dD])([^&;#\s\"']+)")
# a parameter is a credential when a word of its name is one of these, its name ends with one of the SUFFIXES or
# holds one of the PARTS (names written in one case have no word boundaries: AWSACCESSKEYID); a harmless parameter
# caught by mistake loses only its value in a message
CREDENTIAL_WORDS = {"token", "password", "passwd", "pwd", "pass", "sslpassword", "secret", "key", "apikey", "sig",
                    "signature", "auth", "oauth", "authorization", "session", "sessionid", "credential", "credentials",
                    "jwt", "bearer"}
SUFFIXES = ("key", "pwd", "sig")
PARTS = ("token", "passw", "secret", "apikey", "accesskey", "privatekey", "signature", "credential", "sessionid",
         "authorization")
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
    return QUERY.sub(_parameter, USERINFO.sub(r"\1***\3", value))


def credential(name: str) -> bool:
    """Whether a URL parameter's name (as written: any case, percent-encoded) names a credential."""
    for _ in range(8):  # percent-encoded, maybe more than once (a quoted URL in a quoted URL)
        decoded = unquote(name)
        if decoded == name:
            break
        name = decoded
    words = re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name).lower())  # accessToken, api-key
    compact = "".join(words)
    return any(w in CREDENTIAL_WORDS for w in words) or compact.endswith(SUFFIXES) or any(p in compact for p in PARTS)


def _parameter(m: re.Match) -> str:
    sep, name, eq, value = m.groups()
    if credential(name):
        return f"{sep}{name}{eq}***"
    return sep + name + eq + QUERY.sub(_parameter, value)  # a URL quoted in the value (a redirect) is redacted too


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
