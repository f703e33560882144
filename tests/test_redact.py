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
