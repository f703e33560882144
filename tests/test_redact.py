"""searcher.redact: known secrets (the Hub token) and URL passwords out of every text, log record and record."""

import io
import logging

from searcher import redact
from searcher.errors import first_line

SECRET = "hf_redact_test_TOKEN_0123456789abcd"


def test_a_registered_secret_is_redacted_wherever_it_appears():
    redact.secret(SECRET)
    redact.secret("short")  # too short to be a token: it would blank out ordinary words
    assert redact.text(f"401: Authorization: Bearer {SECRET}; sent {SECRET}") == \
        "401: Authorization: Bearer ***; sent ***"
    assert redact.text("a short note") == "a short note"
    assert redact.deep({"url": f"http://h/{SECRET}", "n": [f"x{SECRET}"]}) == {"url": "http://h/***", "n": ["x***"]}
    assert redact.text("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"  # URL passwords as before
    assert first_line(ValueError(f"rejected {SECRET}\nmore")) == "rejected ***"


def test_the_log_filter_redacts_records_of_child_loggers_and_their_tracebacks():
    redact.secret(SECRET)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(redact.Filter())
    logger = logging.getLogger("searcher-redact-test")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logging.getLogger("searcher-redact-test.child").warning("server said %s", f"Bearer {SECRET}")
        try:
            raise RuntimeError(f"echo {SECRET}")
        except RuntimeError:
            logging.getLogger("searcher-redact-test.child").exception("failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "server said Bearer ***" in text and "RuntimeError: echo ***" in text and SECRET not in text


def test_the_cli_registers_hf_token_and_the_login_cache_token(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from searcher.cli import entry as cli

    cached, env = "hf_cached_login_TOKEN_0123456789ab", "hf_environment_TOKEN_0123456789ab"
    (tmp_path / "token").write_text(cached + "\n")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "token"))
    monkeypatch.setenv("HF_TOKEN", env)
    cli._known_secrets()
    assert redact.text(f"{cached} {env}") == "*** ***"


# issue 28: ?access_token= (and every other credential-like parameter but token/password/secret) went through

CREDENTIAL_NAMES = ["access_token", "api_key", "apikey", "key", "secret", "client_secret", "sig", "signature", "auth",
                    "authorization", "token", "password", "pwd", "passwd", "session", "credential", "credentials",
                    "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "X-Goog-Signature",
                    "sslpassword", "refresh_token", "id_token", "private_key", "accessToken", "apiKey",
                    "clientSecret", "sessionId", "AWSAccessKeyId", "auth-token", "subscription-key"]
HARMLESS = "page=2&experiment=sst2"  # parameters that are not credentials stay as they are


def _spellings(name: str, rng) -> list[str]:
    from urllib.parse import quote

    encoded_char = "".join(f"%{ord(c):02X}" if i == 1 else c for i, c in enumerate(name))  # one letter as %XX
    every_char = "".join(f"%{ord(c):02x}" for c in name)  # the whole name percent-encoded, lower-case hex
    return [name, name.upper(), name.lower(), name[:1].upper() + name[1:], encoded_char, every_char,
            quote(encoded_char, safe="")]  # and that encoded once more


def _secret(rng) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~"
    body = "".join(rng.choice(alphabet) for _ in range(rng.randint(10, 30)))
    return "Zq" + body + rng.choice(["", "%2B%3D%3D", "%2F", "=="])  # percent-encoded and padded values too


def test_every_credential_like_url_parameter_is_redacted_fuzzed():
    """Many parameter names and spellings, in the query and the fragment, percent-encoded, repeated, several in one
    URL, and a URL quoted (once and twice) inside another's parameter: no value shows, other parameters stay."""
    import random
    from urllib.parse import quote

    rng = random.Random(28)
    checked = 0
    for _ in range(600):
        picked = rng.sample(CREDENTIAL_NAMES, rng.randint(1, 3))
        names = [rng.choice(_spellings(n, rng)) for n in picked]
        if rng.random() < 0.3:
            names.append(names[0])  # repeated
        secrets = [_secret(rng) for _ in names]
        pairs = [f"{n}={s}" for n, s in zip(names, secrets)]
        where = rng.choice(["query", "fragment", "both", "semicolon", "nested", "nested-twice"])
        if where == "query":
            url = f"https://mlflow.example:5000/api/?{HARMLESS}&" + "&".join(pairs)
        elif where == "fragment":
            url = f"https://app.example/cb?{HARMLESS}#" + "&".join(pairs)
        elif where == "both":
            url = f"https://h.example/?{pairs[0]}&{HARMLESS}#" + "&".join(pairs[1:] or pairs)
        elif where == "semicolon":
            url = f"http://h.example/x?{HARMLESS};" + ";".join(pairs)
        else:
            inner = f"https://in.example/cb?{HARMLESS}&" + "&".join(pairs)
            quoted = quote(inner, safe="") if where == "nested" else quote(quote(inner, safe=""), safe="")
            url = f"https://login.example/?next={quoted}&{HARMLESS}"
        text = f"report: mlflow stopped answering ({url}); and again: '{url}'"
        clean = redact.text(text)
        for s in secrets:
            assert s not in clean and s.split("%")[0] not in clean, (text, clean)
        assert clean.count(HARMLESS) >= 2 * (where not in ("nested", "nested-twice")), clean
        assert "***" in clean
        checked += 1
    assert checked == 600


def test_what_is_not_a_credential_is_left_alone():
    for text in ("https://h.example/?page=2&design=a&author=me&monkey_business=1#section-2",
                 "see trial #3 and https://huggingface.co/datasets/glue?config=sst2&split=validation",
                 "accuracy=0.91 & loss=0.3; token count=12"):
        assert redact.text(text) == text
    assert redact.text("mlflow at http://h:5000/?access_token=abc123456789") == "mlflow at http://h:5000/?access_token=***"
