"""The harness itself: a missing service or input skips on a developer's machine and fails where CI requires it."""

import pytest

from conftest import REQUIRE_ENV, requirement, required


def test_a_missing_requirement_skips_with_the_reason_by_default(monkeypatch):
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no PostgreSQL server here"):
        requirement("postgres", "no PostgreSQL server here")


def test_a_required_requirement_fails_with_the_reason(monkeypatch):
    monkeypatch.setenv(REQUIRE_ENV, "postgres, redis")
    assert required() == {"postgres", "redis"}
    for name in ("postgres", "redis"):
        with pytest.raises(pytest.fail.Exception) as failed:
            requirement(name, f"no {name} here")
        assert f"no {name} here" in str(failed.value) and f"{REQUIRE_ENV} requires {name}" in str(failed.value)
    with pytest.raises(pytest.skip.Exception, match="no data here"):  # not named: still a skip
        requirement("data", "no data here")


def test_unknown_names_are_errors_not_silently_nothing(monkeypatch):
    monkeypatch.setenv(REQUIRE_ENV, "postgres,browsers")
    with pytest.raises(pytest.UsageError, match="browsers"):
        required()
    monkeypatch.delenv(REQUIRE_ENV)
    with pytest.raises(ValueError, match="unknown requirement 'redis-server'"):
        requirement("redis-server", "typo")
