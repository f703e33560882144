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


# a skip that is not about a missing service or input (it names why the test cannot mean anything here)
OWN_SKIPS = {"test_guarantees.py": "running as a user that can write anywhere (root)"}


def test_no_test_skips_around_the_required_resources_switch():
    """A direct pytest.skip (or skipif) cannot be turned into a failure by SEARCHER_TEST_REQUIRE: tests that may lack
    something go through requirement() instead, so CI cannot pass by skipping what it claims to test."""
    import re
    from pathlib import Path

    found = []
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        text = path.read_text()
        for m in re.finditer(r"pytest\.skip\(|pytest\.mark\.skip(?:if)?\b|importorskip\(", text):
            line = text[m.start():text.find("\n", m.start())]
            if path.name == Path(__file__).name or OWN_SKIPS.get(path.name, "\0") in line:
                continue
            found.append(f"{path.name}: {line.strip()}")
    assert not found, found


def test_every_module_has_tests_one_can_find_from_its_name():
    """tests/README.md's rule: test_X.py for searcher/STAGE/X.py (or _X.py), else the stage's test_STAGE.py, else the
    README's table names the module (or its folder)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "tests" / "README.md").read_text()
    lost = []
    for module in sorted((root / "searcher").rglob("*.py")):
        rel = module.relative_to(root / "searcher")
        if module.name == "__init__.py":
            continue
        stage = rel.parts[0] if len(rel.parts) > 1 else None
        found = [root / "tests" / f"test_{module.stem.lstrip('_')}.py"] + \
            ([root / "tests" / f"test_{stage}.py"] if stage else [])
        if not any(f.is_file() for f in found) and f"`{rel.as_posix()}`" not in readme and \
                not (stage and f"`{stage}/`" in readme):
            lost.append(rel.as_posix())
    assert not lost, f"add a row for these to tests/README.md: {lost}"
