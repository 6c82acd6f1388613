"""Answers a served model gave, stored as they arrive so that a killed run resumes without asking them again (and
deleted when the run finishes): one JSON Lines file per server identity, one self-checking line per answer, shared
safely by parallel gates."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from pricer.errors import PricerError

LOCK_TIMEOUT = 60.0  # seconds; an append holds the lock for one write, so only a stuck process waits this long


def digest(obj: object) -> str:
    """sha256 of a JSON value written canonically: the same request or identity gives the same key anywhere."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _check(key: str, text: str) -> str:
    return hashlib.sha256(f"{key}\0{text}".encode()).hexdigest()[:16]


class AnswerStore:
    """One identity's answers: request key -> completion text. A line whose check does not match its key and text
    (a write cut short when the process was killed, a hand edit) is ignored, so its request is asked again."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, str]:
        """Every intact line's answer; a later line for the same key wins (both came from the same identity)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise PricerError(f"{self.path}: cannot read stored answers ({exc.strerror or exc}); delete it to "
                              "ask every item again") from None
        answers: dict[str, str] = {}
        for line in raw.split(b"\n"):
            try:
                record = json.loads(line)
                key, text, check = record["key"], record["text"], record["check"]
            except (ValueError, TypeError, KeyError):
                continue
            if isinstance(key, str) and isinstance(text, str) and check == _check(key, text):
                answers[key] = text
        return answers

    def add(self, key: str, text: str) -> None:
        """Append one answer as one write under a file lock, so two processes' lines never interleave; an empty
        answer is never stored (asked again next time, as an error would be)."""
        if not text:
            return
        from filelock import FileLock

        line = json.dumps({"key": key, "text": text, "check": _check(key, text)}, sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{self.path}.lock", timeout=LOCK_TIMEOUT):
            # A line cut short by a kill has no newline: start on a fresh line so the next answer stays intact.
            fresh = self.path.exists() and self.path.stat().st_size > 0 and not self._ends_with_newline()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (("\n" if fresh else "") + line).encode())
            finally:
                os.close(fd)

    def discard(self) -> None:
        """Delete every stored answer (the run finished, or the server answered differently): under the lock, so
        no other process's append is cut in half."""
        from filelock import FileLock

        if not self.path.exists():
            return
        with FileLock(f"{self.path}.lock", timeout=LOCK_TIMEOUT):
            self.path.unlink(missing_ok=True)

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"


def store_path(folder: Path, identity: Mapping[str, object]) -> Path:
    """The file holding answers of this identity (served model, engine version, sampling fields)."""
    return Path(folder) / f"{digest(dict(identity))[:24]}.jsonl"
