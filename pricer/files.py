"""Atomic writes and strict JSON reads for every file pricer stores."""

from __future__ import annotations

import glob
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from pricer.errors import PricerError

FLOAT_DIGITS = 6  # enough for cents and log errors; fewer digits keep diffs quiet
# A write takes milliseconds: a temp file a minute old was left by a writer that was killed (kill -9, power loss),
# never one still being written. Younger ones may belong to a concurrent writer and are left alone.
STALE_TEMP_SECONDS = 60


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} cannot be stored as JSON")
        return round(value, FLOAT_DIGITS)
    if isinstance(value, dict):
        return {str(k): _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so readers see the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; stored files get the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temps(path: Path) -> list[Path]:
    """Delete the temp files a killed write of `path` left beside it (never read: their names are not the file's)."""
    removed = []
    now = time.time()
    for leftover in Path(path).parent.glob(f".{glob.escape(Path(path).name)}.*.tmp"):
        try:
            if now - leftover.stat().st_mtime > STALE_TEMP_SECONDS:
                leftover.unlink()
                removed.append(leftover)
        except OSError:
            pass  # another writer removed it first
    return removed


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def append_text(path: Path, text: str) -> None:
    """Append `text` in one write to a file opened for appending: writers appending at once never interleave inside
    it, and a file another program owns (GitHub's $GITHUB_STEP_SUMMARY) keeps being that file, not a replacement."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as handle:
        handle.write(text.encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())


def ignored_folder(path: Path) -> Path:
    """A folder of generated files that git ignores by itself (a `.gitignore` of `*` inside, as pytest's cache
    folder has), so output nobody asked to keep never shows up as a change to commit."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    ignore = path / ".gitignore"
    if not ignore.exists():
        atomic_write_text(ignore, "# created by pricer: generated files, never committed\n*\n")
    return path


def dumps_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, two-space indent, rounded floats, trailing newline."""
    return json.dumps(_rounded(obj), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, dumps_json(obj))


def read_text(path: Path, *, error: type[PricerError] = PricerError) -> str:
    """A UTF-8 file's text, raising `error` naming the file when it is missing or unreadable."""
    try:
        # utf-8-sig: without a byte-order mark it is plain UTF-8; with one (Windows editors and PowerShell write
        # it), the mark is dropped, as data files' readers drop it, rather than failing as invalid JSON.
        return Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot be read ({exc})") from None


def read_json(path: Path, *, error: type[PricerError] = PricerError) -> dict[str, Any]:
    """Read a JSON object, raising `error` naming the file when it is missing, truncated or not an object."""
    path = Path(path)
    return json_object(read_text(path, error=error), where=str(path), error=error)


def json_object(text: str, *, where: str, error: type[PricerError] = PricerError) -> dict[str, Any]:
    """Text that must be one JSON object, read from `where` (a file, or a file at a git ref)."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{where}:{exc.lineno}: not valid JSON ({exc.msg}); the file may be truncated") from None
    if not isinstance(obj, dict):
        raise error(f"{where}: expected a JSON object, found {type(obj).__name__}")
    return obj
