"""Adding imported blocks to a study file: after its last byte, keeping every existing byte, only when the result is
still a valid study whose [[enqueue]] entries fit, and never twice. Refused (RecipeError, file unchanged) otherwise.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from searcher.errors import RecipeError, first_line

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib


def append(study_path, text: str) -> Path:
    """Add `text` (from to_toml) at the end of a study file, after a blank line, keeping every existing byte.
    The result must still load and its [[enqueue]] entries must fit the study; a block whose entry the file holds
    already is left out (importing the same card twice adds it once). Otherwise, or when the file cannot be
    written, the file is left unchanged and RecipeError says why."""
    path = Path(study_path).expanduser()
    if not text.strip():
        raise RecipeError(f"nothing to add to {path}: the import produced no [[enqueue]] blocks")
    old = _current(path)
    text = _new_blocks(path, old, text)
    newline = b"\r\n" if b"\r\n" in old else b"\n"
    addition = text.replace("\r\n", "\n").rstrip("\n").encode("utf-8").replace(b"\n", newline) + newline
    lead = b"" if not old or old.endswith(b"\n") else newline
    new = old + lead + newline + addition
    _check(path, new)
    _replace(path, new)
    return path


def _current(path: Path) -> bytes:
    """The study file's bytes, when it is a UTF-8 file searcher may change."""
    if path.is_dir():
        raise RecipeError(f"{path} is a folder; pass the study file (.toml) to add the [[enqueue]] blocks to")
    if not path.is_file():
        raise RecipeError(f"study file {path} does not exist; pass the .toml file to add the [[enqueue]] blocks to")
    # the mode, not os.access: root may write anywhere, but a file made read-only was made so on purpose
    if not path.stat().st_mode & 0o222 or not os.access(path, os.R_OK):
        raise RecipeError(f"{path} is read-only; make it writable (chmod u+w) to add the blocks, or print them "
                          f"without --append and paste them; the file is unchanged")
    try:
        old = path.read_bytes()
        old.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecipeError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8 first; the "
                          f"file is unchanged") from e
    except OSError as e:
        raise RecipeError(f"cannot read {path}: {e.strerror or first_line(e)}; the file is unchanged") from e
    return old


def _entries(document: dict) -> list[dict]:
    entries = document.get("enqueue", [])
    return entries if isinstance(entries, list) else []


def _new_blocks(path: Path, old: bytes, text: str) -> str:
    """The blocks of `text` whose [[enqueue]] entry is not in the file yet (comment-only blocks go with them)."""
    try:
        present = _entries(tomllib.loads(old.decode("utf-8")))
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{path} is not valid TOML ({first_line(e)}); fix it first; the file is unchanged") from e
    blocks = [b for b in text.split("\n\n") if b.strip()]
    fresh = []
    for block in blocks:
        try:
            entries = _entries(tomllib.loads(block))
        except tomllib.TOMLDecodeError:
            entries = []  # the whole text is checked below
        if entries and all(e in present for e in entries):
            continue
        fresh.append(block)
    if not any("[[enqueue]]" in b for b in fresh):
        raise RecipeError(f"{path} already holds these [[enqueue]] blocks; nothing was added")
    return "\n\n".join(b.rstrip("\n") + "\n" for b in fresh)


def _check(path: Path, new: bytes) -> None:
    from searcher.config import parse_study
    from searcher.errors import ConfigError
    from searcher.search.space import check_enqueued

    try:
        config = parse_study(tomllib.loads(new.decode("utf-8")), path.resolve())
        check_enqueued(config)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, ConfigError) as e:
        why = first_line(e) if isinstance(e, ConfigError) else f"not valid TOML: {first_line(e)}"
        raise RecipeError(f"{path}: adding the imported [[enqueue]] blocks would make the study file invalid "
                          f"({why}); the file is unchanged") from e


def _replace(path: Path, new: bytes) -> None:
    """Written beside the file and renamed over it: a crash leaves the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.importing")
    try:
        tmp.write_bytes(new)
        shutil.copymode(path, tmp)
        os.replace(tmp, path)
    except OSError as e:  # an immutable file (chattr +i), a read-only folder, a full disk
        raise RecipeError(f"cannot write {path}: {e.strerror or first_line(e)}; the file is unchanged (print the "
                          f"blocks without --append and paste them)") from e
    finally:
        if tmp.exists():
            tmp.unlink()
