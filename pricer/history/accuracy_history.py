"""The accuracy history: JSON Lines, one AccuracyEntry per gated width of an eval run (`--pricer-history`),
appended atomically under a lock and never rewritten; a bad or foreign line fails naming the file and line."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pricer.errors import HistoryError
from pricer.files import atomic_write_bytes, locked, not_a_file, output_errors, output_target
from pricer.history.benchmark_runs import DEFAULT_STORAGE, parse_utc
from pricer.store.fingerprint import Scalar
from pricer.store.machines import Machine, machine_of

if TYPE_CHECKING:  # annotations only: importing these at run time would load the evaluation stack
    from pricer.engines.evaluate import RunResult
    from pricer.store.fingerprint import Fingerprint

DEFAULT_ACCURACY = DEFAULT_STORAGE / "pricer-accuracy.jsonl"  # .jsonl: pytest-benchmark only reads */*.json
ACCURACY_FORMAT = "pricer-accuracy/1"  # on every line: a line without it was not written by pricer
ITEM_ERROR_DIGITS = 4  # prices have cents; 4 digits keep the paired differences exact
FLOAT_DIGITS = 6


@dataclass(frozen=True, slots=True, kw_only=True)
class AccuracyEntry:
    """One gated width of one eval run: a line of the accuracy history."""

    date: str  # UTC, ISO 8601
    model: str
    width: str
    n: int
    error: float
    error_ci: tuple[float, float]
    rmsle: float
    hits: float  # share, 0..1
    unparsed: int
    item_errors: tuple[float, ...]  # in item order: later entries on the same items compare pairwise
    data_sha256: str | None
    inputs: Mapping[str, Scalar]  # the run's decisive fingerprint fields
    passed: bool | None  # the gate's verdict against the stored baseline
    commit: str | None
    dirty: bool | None
    machine: Mapping[str, Any]  # node, cpu, cpu_features, python, platform, gpu (as this_machine gives)

    @property
    def when(self) -> dt.datetime:
        return parse_utc(self.date, where="date")

    @property
    def machine_key(self) -> Machine:
        return machine_of(self.machine, where="machine", cpu=self.machine.get("cpu"))

    def to_dict(self) -> dict[str, Any]:
        """One JSON object: the line's fields, plus the format tag."""
        return _rounded({"format": ACCURACY_FORMAT, "date": self.date, "model": self.model, "width": self.width,
                         "n": self.n, "error": self.error, "error_ci": list(self.error_ci), "rmsle": self.rmsle,
                         "hits": self.hits, "unparsed": self.unparsed, "item_errors": list(self.item_errors),
                         "data_sha256": self.data_sha256, "inputs": dict(self.inputs), "passed": self.passed,
                         "commit": self.commit, "dirty": self.dirty, "machine": dict(self.machine)})

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, where: str) -> AccuracyEntry:
        """The inverse of to_dict, checking every field."""

        def get(name: str, kinds: tuple[type, ...], *, optional: bool = False) -> Any:
            value = raw.get(name)
            no_count = name == "n" and type(value) is int and value < 1
            if no_count or isinstance(value, float) and not math.isfinite(value):  # NaN, Infinity: not JSON's own
                raise HistoryError(f"{where}: field {name!r}: {value!r} is not a {'count' if no_count else 'number'}"
                                   "; the line was hand-edited or damaged: restore it from version control or delete it")
            if (value is None and optional) or (isinstance(value, kinds) and not isinstance(value, bool)) or (
                    bool in kinds and isinstance(value, bool)):
                return value
            raise HistoryError(f"{where}: field {name!r}: {value!r} is not {' or '.join(k.__name__ for k in kinds)}")

        if raw.get("format") != ACCURACY_FORMAT:
            raise HistoryError(f"{where}: not a pricer accuracy entry (no \"format\": \"{ACCURACY_FORMAT}\"); "
                               "is this the right file? (--pricer-history / --accuracy-history)")
        ci, item_errors = get("error_ci", (list,)), get("item_errors", (list,))
        numbers = [*ci, *item_errors]
        if len(ci) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                   for v in numbers):
            raise HistoryError(f"{where}: fields 'error_ci' and 'item_errors' must be lists of numbers (2 for the CI)")
        machine, inputs = get("machine", (dict,)), get("inputs", (dict,))
        entry = cls(date=get("date", (str,)), model=get("model", (str,)), width=get("width", (str,)),
                    n=get("n", (int,)), error=float(get("error", (int, float))), error_ci=(float(ci[0]), float(ci[1])),
                    rmsle=float(get("rmsle", (int, float))), hits=float(get("hits", (int, float))),
                    unparsed=get("unparsed", (int,)), item_errors=tuple(float(v) for v in item_errors),
                    data_sha256=get("data_sha256", (str,), optional=True), inputs=inputs,
                    passed=get("passed", (bool,), optional=True), commit=get("commit", (str,), optional=True),
                    dirty=get("dirty", (bool,), optional=True), machine=machine)
        parse_utc(entry.date, where=f"{where}: field 'date'")  # parsed now, so a bad date or machine names its line
        machine_of(machine, where=f"{where}: field 'machine'", cpu=machine.get("cpu"))
        return entry


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, FLOAT_DIGITS)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def accuracy_entry(*, model: str, width: str, run: RunResult, fingerprint: Fingerprint, passed: bool | None,
                   commit: Mapping[str, Scalar], machine: Mapping[str, Any], date: str) -> AccuracyEntry:
    """The entry for one width's run and fingerprint."""
    m = run.metrics
    return AccuracyEntry(
        date=date, model=model, width=width, n=m.n, error=m.error, error_ci=tuple(m.error_ci), rmsle=m.rmsle,
        hits=m.hits, unparsed=m.unparsed, item_errors=tuple(round(s.error, ITEM_ERROR_DIGITS) for s in run.scores),
        data_sha256=fingerprint.decisive.get("items_sha256"), inputs=dict(fingerprint.decisive), passed=passed,
        commit=commit.get("commit"), dirty=commit.get("dirty"), machine=dict(machine),
    )


def read_accuracy(path: Path) -> list[AccuracyEntry]:
    """Every entry of an accuracy history; a bad line fails naming the file and line."""
    path = Path(path)
    problem = not_a_file(path)
    if problem:
        raise HistoryError(f"{path}: {problem}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise HistoryError(f"{path}: accuracy history not found; write one with "
                           f"`pytest -m eval --pricer-history {path}`") from None
    except OSError as exc:
        raise HistoryError(f"{path}: cannot be read ({exc})") from None
    return _parse_accuracy(data, path)


def _parse_accuracy(data: bytes, path: Path) -> list[AccuracyEntry]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise HistoryError(f"{path}: not a text file, so not an accuracy history") from None
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            _refuse_other_document(text, path)
            raise HistoryError(f"{where}: not valid JSON ({exc.msg}); the line may be truncated or hand-edited: "
                               "restore it from version control or delete it") from None
        if not isinstance(raw, dict):
            raise HistoryError(f"{where}: expected a JSON object, found {type(raw).__name__}")
        entries.append(AccuracyEntry.from_dict(raw, where=where))
    return entries


def _refuse_other_document(text: str, path: Path) -> None:
    """A whole, valid JSON document is another kind of file, not a damaged history: say which, never "delete it"."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return
    if isinstance(document, dict) and "benchmarks" in document and "machine_info" in document:
        raise HistoryError(f"{path}: a pytest-benchmark run, not an accuracy history; read it with "
                           f"--benchmark-storage {path.parent.parent} (the folder above its machine's folder), and "
                           "give --accuracy-history the JSON Lines that `pytest -m eval --pricer-history PATH` writes")
    raise HistoryError(f"{path}: one JSON document, not an accuracy history (JSON Lines written by "
                       "`pytest -m eval --pricer-history PATH`, one entry per line)")


def append_accuracy(path: Path, entries: Sequence[AccuracyEntry]) -> None:
    """Append entries atomically: the earlier bytes are kept as they are; a bad file fails and stays untouched."""
    path = Path(path)
    new = "".join(json.dumps(e.to_dict(), sort_keys=True, ensure_ascii=False) + "\n" for e in entries)
    target = output_target(path)
    if target.stream:  # /dev/null, a pipe: the new lines only, nothing read back
        atomic_write_bytes(path, new.encode("utf-8"))
        return
    with output_errors(path):
        target.file.parent.mkdir(parents=True, exist_ok=True)
        with locked(target.file.parent):
            old = target.file.read_bytes() if target.exists else b""
            _parse_accuracy(old, path)  # before writing: never bury a file we cannot read under new lines
            if old and not old.endswith(b"\n"):
                old += b"\n"
            atomic_write_bytes(target.file, old + new.encode("utf-8"))

