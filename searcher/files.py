"""Files that several processes share: atomic writes and file locks, written one way for the whole package.

Caches (tokens, teacher logits, fine-tuned teachers, latency), checkpoints and card folders are read by other workers
while they are written. Everything is written beside its target and renamed into place, so a reader sees the old
file or the new one, never half of one; a crash leaves only a `*.tmp*` entry, which `remove_stale` cleans up.
This module knows nothing of models or studies.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, TypeVar

from searcher.errors import SearcherError, first_line

TMP_MARK = ".tmp"
# a temp entry names its writer (host and pid): on this host a dead pid means a crashed writer; another host's
# entry is judged by age, since no write takes this long
STALE_AFTER_S = 6 * 3600


def _tmp_prefix(name: str) -> str:
    return f"{name}{TMP_MARK}~{socket.gethostname()}~{os.getpid()}~"


class WriteError(SearcherError, OSError):
    """A file or folder could not be written (disk full, read-only): one line naming it; nothing half-written."""


def _cannot_write(path: Path, error: OSError) -> WriteError:
    reason = error.strerror or str(error).splitlines()[0] if str(error) else type(error).__name__
    return WriteError(f"cannot write {path}: {reason}; free disk space or make the folder writable")


def lock(path: Path, timeout: float = -1):
    """A file lock beside `path` (`path.lock`), for processes on one machine. Use as a context manager."""
    from filelock import FileLock

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".lock", timeout=timeout)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temp path beside `path` to write by name (e.g. a memory-mapped array); renamed to `path` when the
    block succeeds, removed otherwise."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_tmp_prefix(path.name))
        os.close(fd)
    except OSError as e:
        raise _cannot_write(path, e) from e
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise _cannot_write(path, e) from e
        raise


def write_atomic(path: Path, write: Callable) -> None:
    """Call `write(binary_file)` on a temp file beside `path`, then rename it to `path`."""
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as f:
            write(f)


def write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def save_npz(path: Path, arrays: dict) -> None:
    """A cache's arrays, sealed (see `seal`): a zip checks its members' CRC, not the headers that locate them."""
    import numpy as np

    with atomic_file(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        seal(tmp, path)


@contextlib.contextmanager
def atomic_dir(out: Path) -> Iterator[Path]:
    """Yield a temp folder beside `out`; when the block succeeds it replaces `out` whole, else it is removed."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=_tmp_prefix(out.name)))
    except OSError as e:
        raise _cannot_write(out, e) from e
    try:
        yield tmp
        mask = _umask()
        os.chmod(tmp, 0o777 & ~mask)
        for f in tmp.rglob("*"):  # what libraries wrote inside gets the umask's modes too (safetensors writes 0600)
            if f.is_file() and not f.is_symlink():
                os.chmod(f, (0o666 | (f.stat().st_mode & 0o111)) & ~mask)
        # a rename cannot replace a non-empty folder: the old one is moved aside first and deleted after, so `out`
        # is always the old folder or the new one, never missing or half
        aside = Path(tempfile.mkdtemp(dir=out.parent, prefix=_tmp_prefix(out.name))) if out.exists() else None
        if aside is not None:
            os.replace(out, aside / out.name)
        os.replace(tmp, out)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise _cannot_write(out, e) from e
        raise


def remove_stale(folder: Path, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove temp files/folders that crashed writers left in `folder` (not recursive). Returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    now = time.time()
    host = socket.gethostname()
    for entry in folder.iterdir():
        if TMP_MARK not in entry.name:
            continue
        try:
            writer = entry.name.split(TMP_MARK, 1)[1].split("~")
            mine = len(writer) >= 3 and writer[1] == host and writer[2].isdigit()
            if mine and _alive(int(writer[2])):
                continue
            if not mine and now - entry.lstat().st_mtime < older_than_s:
                continue
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            removed.append(entry)
        except OSError:
            continue
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def folder_size(folder: Path, pattern: str = "*") -> int:
    """Bytes of the files matching `pattern` directly in `folder` (0 if it does not exist)."""
    folder = Path(folder)
    return sum(f.stat().st_size for f in folder.glob(pattern) if f.is_file()) if folder.is_dir() else 0


# --- cache entries that may be damaged ---
# A cache file can be truncated by a full disk or a copy, overwritten by hand, or half-synced; it then fails to read
# in more ways than a list of exception types can name (a bad zip, a short memory map, a header that parses into a
# huge shape, bytes that are not UTF-8). Each cache reader runs inside `reading_cache`, which turns any failure into
# DamagedCache, and says it with `note_damaged`: one log line, then the entry is rebuilt. Array files carry a seal
# (their size and CRC-32 in a file beside them), checked before they are parsed: random bytes inside a memory-mapped
# array would read as numbers, and a zip does not check the headers that locate its members.

SEAL = ".crc32"
_noted: set = set()


class DamagedCache(SearcherError):
    """A cache entry that cannot be trusted. Internal: its reader logs one line and rebuilds the entry."""

    def __init__(self, what: str, path: Path, reason: str):
        self.what, self.path, self.reason = what, Path(path), reason
        super().__init__(f"{what} {path} is damaged ({reason}); rebuilding it")


@contextlib.contextmanager
def reading_cache(what: str, path: Path) -> Iterator[None]:
    """Any failure inside the block becomes DamagedCache(what, path, reason)."""
    try:
        yield
    except DamagedCache:
        raise
    except Exception as e:  # noqa: BLE001 - whatever the damage, the answer is the same: rebuild
        reason = first_line(e)
        raise DamagedCache(what, path, reason if len(reason) <= 120 else reason[:117] + "...") from e


def note_damaged(log, damage: DamagedCache) -> None:
    """The one log line for a damaged entry: said once per process for the same damaged file (a reader checks the
    entry again under the lock before rebuilding it, and must not say it twice)."""
    try:
        st = damage.path.stat()
        key = (str(damage.path), st.st_size, st.st_mtime_ns)
    except OSError:
        key = (str(damage.path), None, None)
    if key not in _noted:
        _noted.add(key)
        log.warning("%s", damage)


def _crc32(path: Path) -> int:
    import zlib

    crc = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            crc = zlib.crc32(block, crc)
    return crc


def seal(tmp: Path, path: Path) -> None:
    """Write the seal of `path` from its finished temp file `tmp`, before `tmp` is renamed to `path`."""
    write_text(Path(str(path) + SEAL), f"{Path(tmp).stat().st_size} {_crc32(tmp):08x}\n")


def check_seal(path: Path) -> None:
    """Raise ValueError when `path` does not match its seal, or has none: every array cache is written sealed, so a
    missing seal means the entry was tampered with or copied without it (a zeroed array would otherwise read as
    numbers)."""
    sealed = Path(str(path) + SEAL)
    if not sealed.is_file():
        raise ValueError(f"its seal {sealed.name} is missing")
    size, crc = sealed.read_text(encoding="ascii").split()
    actual = Path(path).stat().st_size
    if actual != int(size):
        raise ValueError(f"{actual} bytes, its seal says {int(size)}")
    if _crc32(path) != int(crc, 16):
        raise ValueError("its bytes do not match its checksum")


def read_json(path: Path) -> Optional[dict]:
    """A JSON object from `path`, or None when it is missing, unreadable or not an object."""
    import json

    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


# --- the double-checked cache: one way for every cache kind ---


def cache_key(parts: Any, length: int = 24) -> str:
    """The one way a cache names an entry: the SHA-256 of what it depends on (`parts`, JSON), in hex, cut short."""
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:length]


T = TypeVar("T")


def read_entry(what: str, path: Path, read: Callable[[], Optional[T]], log) -> Optional[T]:
    """`read()` the entry at `path` (None: it is not there). Anything it raises means the entry is damaged: one log
    line (`note_damaged`), and None, so that the caller rebuilds it."""
    try:
        with reading_cache(what, path):
            return read()
    except DamagedCache as e:
        note_damaged(log, e)
        return None


def cached(what: str, path: Path, read: Callable[[], Optional[T]], build: Callable[[], T], log) -> T:
    """A cache entry built once by whichever process gets there first: read it; else take its lock, read it again (a
    worker may have built it while this one waited), else `build()` it. `read` returns None when the entry is not
    there and raises on anything wrong with it (`read_entry`: one log line, then it is rebuilt); `build` writes it
    atomically, sealed where it is an array (`save_npz`, `atomic_file` + `seal`), and returns the value."""
    found = read_entry(what, path, read, log)
    if found is not None:
        return found
    with lock(path):
        found = read_entry(what, path, read, log)
        if found is not None:
            return found
        return build()
