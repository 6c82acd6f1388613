"""Every output pricer writes, and strict JSON reads of what it stores.

One way to write: our own regular files atomically (links followed on purpose), streams (/dev/null, /dev/stdout, a
pipe) once as they are, never read back; anything else (a folder, a disk, a socket, a dangling link) refused."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import glob
import json
import math
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pricer.errors import OutputError, PricerError

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
    """Write `data` to the output `path` (see `output_target`): a regular file so readers see the old file or the new
    one, never half of one; a stream as it is; anything else refused. OutputError names the path and the cause."""
    target = output_target(path)
    with output_errors(path):
        if target.stream:
            _write_stream(target.path, data)
        else:
            _replace(target.file, data)


def _replace(path: Path, data: bytes) -> None:
    """Temp file in the same folder, flush, fsync, rename over the old file."""
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


def _write_stream(path: Path, data: bytes) -> None:
    """Write once to a stream, never read back, never fsynced. O_APPEND: /dev/stdout redirected to a log file must not
    truncate it; O_NONBLOCK for the open only: a FIFO nobody reads would otherwise block forever."""
    try:
        # getattr: Windows has neither flag (nor FIFOs)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO with no reader
            raise OutputError(f"{path}: a FIFO (named pipe) that nothing reads; start its reader first") from None
        raise
    try:
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)  # a full pipe waits for its reader rather than failing half-written
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """Where an output goes: `file`, the regular file written atomically (a link's target: links are followed on
    purpose), or a stream (a character device such as /dev/null, a FIFO, /dev/stdout) written as it is."""

    path: Path  # as given
    file: Path  # where a regular file is written: the path, or the file a link points at
    stream: bool = False
    exists: bool = False


# A file descriptor seen as a path: /dev/stdout redirected to a log file resolves to that file, which must get the
# output appended, not be replaced by it.
_FD_ALIAS = re.compile(r"^/(?:dev/(?:stdout|stderr|fd/\d+)|proc/[^/]+/fd/\d+)\Z")


def output_target(path: Path) -> Target:
    """What writing to `path` means; OutputError, naming the path and what it is, for a target pricer never writes:
    a folder, a block device, a socket, a dangling link, a path under a file."""
    path = Path(path)
    problem = _refusal(path)
    if problem:
        raise OutputError(f"{path}: {problem}")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return Target(path=path, file=path)
    if stat.S_ISREG(mode) and not _fd_alias(path):
        return Target(path=path, file=Path(os.path.realpath(path)), exists=True)
    return Target(path=path, file=path, stream=True, exists=True)


def output_problem(path: Path) -> str | None:
    """Why pricer would refuse to write `path` (checked before a run), else None."""
    return _refusal(Path(path))


def _refusal(path: Path) -> str | None:
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        if os.path.islink(path):
            return f"a dangling link to {os.readlink(path)}, which does not exist; pricer writes through no such link"
        blocking = next((p for p in path.parents if os.path.exists(p)), None)  # nearest: "." exists, or "/"
        if blocking is not None and not blocking.is_dir():
            return f"inside {blocking}, which is {kind(blocking)}, not a folder"
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"{kind(path)}; pricer writes through no such link"
        return f"cannot be checked ({exc.strerror or exc})"
    if stat.S_ISREG(mode) or stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return None
    return f"{kind(path)}; pricer writes only regular files and streams (/dev/null, /dev/stdout, a pipe)"


def kind(path: Path) -> str:
    """What a path is, in words: "a folder", "a FIFO (named pipe)", "a dangling link to x"..."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return f"a dangling link to {os.readlink(path)}" if os.path.islink(path) else "missing"
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # links that lead to each other, never to a file
            return "a loop of symbolic links"
        return f"unreadable ({exc.strerror or exc})"
    for test, words in _KINDS:
        if test(mode):
            return words
    return "not a regular file"


_KINDS = ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device (a disk)"),
          (stat.S_ISSOCK, "a socket"))


def _fd_alias(path: Path) -> bool:
    """Whether the path, or a link on the way to its file, is a file descriptor's alias (/dev/stdout...)."""
    current = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on links followed
        if _FD_ALIAS.match(current):
            return True
        if not os.path.islink(current):
            return False
        current = os.path.join(os.path.dirname(current), os.readlink(current))
        current = os.path.normpath(current)
    return False


@contextlib.contextmanager
def output_errors(path: Path) -> Iterator[None]:
    """An OSError while writing `path` (permission, full disk, read-only file system) becomes one OutputError
    naming the path and the cause, never a traceback."""
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        cause = exc.strerror or str(exc)
        where = f" (at {exc.filename})" if exc.filename and Path(str(exc.filename)).parent != Path(path).parent else ""
        raise OutputError(f"{path}: cannot be written: {cause}{where}") from None


def append_text(path: Path, text: str) -> None:
    """Append `text` to an output that is ours (see `append_problem`): a regular file is rewritten atomically with
    the text after its old bytes, under a lock (writers at once never drop or split each other's text; a kill leaves
    the old file or the new one, never half a block); $GITHUB_STEP_SUMMARY, which GitHub's runner owns, and a file
    we may write in a folder we may not get one append and stay that file; a stream gets the text as it is."""
    target = output_target(path)
    problem = append_problem(path)
    if problem:
        raise OutputError(f"{path}: {problem}")
    data = text.encode("utf-8")
    with output_errors(path):
        if target.stream:
            _write_stream(target.path, data)
            return
        target.file.parent.mkdir(parents=True, exist_ok=True)
        if not _step_summary(target.file):
            try:
                with locked(target.file.parent):
                    old = target.file.read_bytes() if target.file.exists() else b""
                    _replace(target.file, old + data)
                return
            except PermissionError:
                if not os.access(target.file, os.W_OK):
                    raise
                # A file we may write in a folder we may not: one append, as to $GITHUB_STEP_SUMMARY.
        with open(target.file, "ab") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on the folder: two sessions appending at once must not drop each other's text."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; appends there are atomic but not serialized
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _step_summary(path: Path) -> bool:
    summary = os.environ.get(SUMMARY_ENV)
    try:
        return bool(summary) and os.path.samefile(summary, path)
    except OSError:
        return False


def existing_head(path: Path, size: int) -> bytes | None:
    """The first `size` bytes of the regular file at `path`, to tell whether it is pricer's own to replace; None where
    there is nothing to lose (no file, an empty one, a stream) or nothing to read (the write will name why)."""
    target = output_target(path)
    if target.stream or not target.exists:
        return None
    try:
        with open(target.file, "rb") as handle:
            return handle.read(size) or None
    except OSError:
        return None


MARKDOWN_SUFFIXES = (".md", ".markdown")
SUMMARY_ENV = "GITHUB_STEP_SUMMARY"  # GitHub Actions' summary file of the step: ours to append to, whatever its name
_OUR_HEADING = b"## pricer "  # how every document pricer appends begins


def append_problem(path: Path) -> str | None:
    """Why Markdown must not be appended to `path`, else None: pricer appends to a new or empty file, a Markdown one
    (.md, or begun by pricer), $GITHUB_STEP_SUMMARY's or a stream, never to another program's file (a .png, a
    pyproject.toml), which the text would break."""
    problem = output_problem(path)
    if problem:
        return problem
    target = output_target(path)
    if target.stream or not target.exists or target.file.suffix.lower() in MARKDOWN_SUFFIXES:
        return None
    if _step_summary(target.file):
        return None
    if existing_head(path, len(_OUR_HEADING)) in (None, _OUR_HEADING):
        return None
    return (f"an existing file that is not Markdown ({kind(path)} without a .md suffix, not begun by pricer); the "
            "summary is appended only to a new, empty or Markdown file: name a .md file")


def tail_bytes(path: Path, count: int) -> bytes:
    """The last `count` bytes of a regular file (b"" when there is none); a stream is never read."""
    target = output_target(path)
    if target.stream or not target.exists:
        return b""
    with output_errors(path), open(target.file, "rb") as handle:
        handle.seek(max(0, os.fstat(handle.fileno()).st_size - count))
        return handle.read(count)


def ignored_folder(path: Path) -> Path:
    """A folder of generated files that git ignores by itself (a `.gitignore` of `*` inside, as pytest's cache
    folder has), so output nobody asked to keep never shows up as a change to commit."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    ignore = path / ".gitignore"
    if not ignore.exists():
        atomic_write_text(ignore, "# created by pricer: generated files, never committed\n*\n")
    return path


def today() -> str:
    """The UTC time stamp every stored record carries, e.g. 2026-01-31T12:00:00Z."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_date(text: str, *, where: str, error: type[PricerError] = PricerError) -> dt.datetime:
    """An ISO 8601 date (as `today` writes) as an aware UTC datetime (no zone: UTC); a bad one raises `error` naming
    `where`."""
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise error(f"{where}: {text!r} is not an ISO 8601 date") from None
    return (when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)).astimezone(dt.timezone.utc)


def dumps_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, two-space indent, rounded floats, trailing newline."""
    return json.dumps(_rounded(obj), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, dumps_json(obj))


def read_text(path: Path, *, error: type[PricerError] = PricerError) -> str:
    """A UTF-8 file's text, raising `error` naming the file when it is missing or unreadable."""
    problem = not_a_file(path)
    if problem:
        raise error(f"{path}: {problem}")
    try:
        # utf-8-sig: without a byte-order mark it is plain UTF-8; with one (Windows editors and PowerShell write
        # it), the mark is dropped, as data files' readers drop it, rather than failing as invalid JSON.
        return Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot be read ({exc})") from None


def not_a_file(path: Path) -> str | None:
    """Why `path` cannot be read as a file although it exists (a FIFO would block the read forever, a device never
    end), else None."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:  # missing or unreadable: the read names it; a loop of links never ends in a file
        return f"{kind(path)}, not a file to read" if exc.errno == errno.ELOOP else None
    return None if stat.S_ISREG(mode) else f"{kind(path)}, not a file to read"


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
