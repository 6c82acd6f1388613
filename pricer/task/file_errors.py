"""What is wrong inside a data file `datasets` could not read or would misread, by file and line: not UTF-8, a
line that is not JSON, no rows, rows wrapped in one object."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pricer.errors import DataError


def refuse_wrapped_rows(file: Path) -> None:
    """DataError for a JSON file that is one object holding the rows ({"rows": [...]}): `datasets` reads it as a
    single row, which would be reported as too few rows or a missing column."""
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(value, dict):
        return
    # A list of objects under a key is the rows; one row of plain columns is a row, reported as such later.
    held = [key for key, inner in value.items() if isinstance(inner, list) and inner and isinstance(inner[0], dict)]
    if held:
        raise DataError(f"{file}: a JSON object (keys {', '.join(map(repr, value))}), not rows; its rows seem to be "
                        f"under {held[0]!r}: write the rows as a JSON list [{{...}}, ...] or one object per line "
                        "(JSON Lines)")


def check_utf8(file: Path) -> None:
    """DataError naming line, column and byte of a text file that is not UTF-8 (a Latin-1 or UTF-16 export)."""
    data = file.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        utf16 = "; it starts with a UTF-16 byte-order mark" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise DataError(f"{file}:{line}:{column}: not UTF-8 text (byte 0x{data[exc.start]:02x}{utf16}); "
                        "save the file as UTF-8") from None


def unreadable(files: Sequence[Path], exc: BaseException) -> DataError:
    """The clearest error for files `datasets` could not read: a bad JSON line by number, else the root cause."""
    for file in files:
        if file.suffix.lower() in (".jsonl", ".json", ".csv") and file.is_file() and _has_no_rows(file):
            return DataError(f"{file}: has no rows")  # datasets says 'Instruction "train" corresponds to no data!'
        if file.suffix.lower() in (".jsonl", ".json") and file.is_file():
            bad_line = _bad_json_line(file)
            if bad_line:
                return DataError(bad_line)
    root = exc
    while root.__cause__ is not None or root.__context__ is not None:
        root = root.__cause__ or root.__context__
    place = str(files[0]) if len(files) == 1 else ", ".join(str(file) for file in files)
    detail = str(root).strip().splitlines()[0] if str(root).strip() else "no detail"
    return DataError(f"{place}: cannot be read as product data ({type(root).__name__}: {detail})")


def _has_no_rows(file: Path) -> bool:
    """A text file of blank lines, or a CSV of only its header."""
    with file.open(encoding="utf-8", errors="replace") as handle:
        lines = sum(1 for line in handle if line.strip())
    return lines <= (1 if file.suffix.lower() == ".csv" else 0)


def _bad_json_line(file: Path) -> str | None:
    """`path:line: why` for the first line of a JSON Lines file that is not a JSON object, else None."""
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return f"{file}: not UTF-8 text (byte {exc.start})"
    except OSError as exc:
        return f"{file}: cannot be read ({exc.strerror})"
    lines = text.splitlines()
    last = max((number for number, line in enumerate(lines, 1) if line.strip()), default=0)
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == 1 and file.suffix.lower() == ".json":
                return _bad_json_document(file, text)
            cut = "; the file looks truncated" if number == last and not text.endswith("\n") else ""
            return f"{file}:{number}:{exc.colno}: not valid JSON ({exc.msg}){cut}"
        if not isinstance(value, dict) and file.suffix.lower() == ".jsonl":
            return f"{file}:{number}: a {type(value).__name__}, not a JSON object with 'text' and 'price'"
    return None


def _bad_json_document(file: Path, text: str) -> str | None:
    """`path:line: why` for a .json file holding one document (a list of rows) that does not parse."""
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return f"{file}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})"
    return None
