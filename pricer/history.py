"""Histories over runs: saved pytest-benchmark runs and the accuracy history read back, per machine and bit width,
shown as a table and as one chart of latency and Error on a shared time axis, significant changes marked.

A saved benchmark run is pytest-benchmark's JSON plus what `add_machine_details` adds to its `machine_info`; the
accuracy history is JSON Lines, one `AccuracyEntry` per gated width, appended atomically and never rewritten.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import math
import os
import platform
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pricer.errors import HistoryError
from pricer.files import atomic_write_bytes
from pricer.fingerprint import Scalar

if TYPE_CHECKING:  # annotations only: importing these at run time would load the evaluation stack
    from pricer.evaluate import RunResult
    from pricer.fingerprint import Fingerprint
    from pricer.session import EvalSession

DEFAULT_STORAGE = Path(".benchmarks")  # pytest-benchmark's default --benchmark-storage
DEFAULT_ACCURACY = DEFAULT_STORAGE / "pricer-accuracy.jsonl"  # .jsonl: pytest-benchmark only reads */*.json
DEFAULT_CHART = Path("charts") / "history.png"
ACCURACY_FORMAT = "pricer-accuracy/1"  # on every line: a line without it was not written by pricer
# A latency change is significant when the mean moved by at least LATENCY_MIN_CHANGE *and* Welch's t-test over
# the two runs' rounds gives p < LATENCY_ALPHA. t alone flags 1-2% drifts that a shared machine makes between
# runs anyway; 10% matches the `--benchmark-compare-fail=mean:10%` the README suggests.
LATENCY_MIN_CHANGE = 0.10
LATENCY_ALPHA = 0.05
ERROR_CONFIDENCE = 0.95
ITEM_ERROR_DIGITS = 4  # prices have cents; 4 digits keep the paired differences exact
FLOAT_DIGITS = 6
WIDTH_ORDER = ("4bit", "8bit", "16bit", "32bit")
LATENCY_COLOR, ERROR_COLOR, CHANGE_COLOR = "tab:blue", "tab:orange", "red"
PANEL_SIZE = (4.8, 3.4)  # inches per (width, machine) panel


# ---------------------------------------------------------------- machines


@dataclass(frozen=True, slots=True, kw_only=True)
class Machine:
    """What tells machines apart: host name, CPU and GPU. Runs of different machines are never mixed."""

    node: str
    cpu: str
    gpu: str | None  # None: no CUDA GPU
    gpu_recorded: bool = True  # False for benchmark runs saved without pricer's plugin: their GPU is unknown
    cpu_features: str = field(default="", compare=False)
    gpu_memory_bytes: int | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        gpu = self.gpu or ("no GPU" if self.gpu_recorded else "GPU not recorded")
        if self.gpu and self.gpu_memory_bytes:
            gpu += f" {self.gpu_memory_bytes / 2**30:.0f} GiB"
        return f"{self.node} / {self.cpu} / {gpu}"


def gpu_info() -> dict[str, Any] | None:
    """The first CUDA GPU's name, memory, compute capability and CUDA version; None where CUDA is unavailable."""
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return {"name": props.name, "memory_bytes": int(props.total_memory), "capability": f"{props.major}.{props.minor}",
            "count": torch.cuda.device_count(), "cuda": torch.version.cuda}


def add_machine_details(machine_info: dict[str, Any]) -> None:
    """What pricer adds to a saved benchmark run's machine_info: the GPU (or None) and the CPU's matmul features."""
    from pricer.fingerprint import machine_info as pricer_machine_info

    machine_info["gpu"] = gpu_info()
    machine_info["cpu_features"] = pricer_machine_info()["cpu_features"]


def this_machine() -> dict[str, Any]:
    """This machine as an accuracy entry records it: the fields a benchmark run's machine_info has, flat."""
    from pricer.fingerprint import machine_info as pricer_machine_info

    return {"node": platform.node(), **pricer_machine_info(), "gpu": gpu_info()}


def _machine(info: Mapping[str, Any], *, where: str, cpu: Any) -> Machine:
    """A Machine from a benchmark run's machine_info or an entry's machine (cpu given as found in each)."""
    node = info.get("node")
    if not isinstance(node, str) or not isinstance(cpu, str):
        raise HistoryError(f"{where}: machine_info needs a 'node' and a CPU name; found node {node!r}, cpu {cpu!r}")
    gpu = info.get("gpu")
    if gpu is not None and not (isinstance(gpu, dict) and isinstance(gpu.get("name"), str)):
        raise HistoryError(f"{where}: machine_info 'gpu' must be null or an object with a 'name'; found {gpu!r}")
    memory = gpu.get("memory_bytes") if gpu else None
    return Machine(node=node, cpu=cpu, gpu=gpu["name"] if gpu else None, gpu_recorded="gpu" in info,
                   cpu_features=str(info.get("cpu_features", "")),
                   gpu_memory_bytes=memory if isinstance(memory, int) else None)


# ---------------------------------------------------------------- pytest-benchmark runs


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchPoint:
    """One benchmark of one saved pytest-benchmark run."""

    file: Path
    machine: Machine
    when: dt.datetime  # UTC
    commit: str | None
    dirty: bool | None
    name: str  # the test's name without its parameters
    width: str
    device: str | None
    mean: float  # seconds
    stddev: float
    rounds: int
    tokens_per_s: float | None
    peak_memory_bytes: int | None


def storage_path(storage: str | Path) -> Path:
    """A --benchmark-storage value as a folder: a plain path or a file:// URI, as pytest-benchmark takes it."""
    text = str(storage)
    if text.startswith("file://"):
        return Path(text.removeprefix("file://"))
    if "://" in text:
        raise HistoryError(f"--benchmark-storage {text}: only folders (or file:// URIs) can be read; "
                           "export the runs to a folder first")
    return Path(text)


def read_benchmarks(storage: str | Path) -> list[BenchPoint]:
    """Every benchmark of every run saved in `storage` (`<storage>/<machine id>/<NNNN>_<commit>_<date>.json`)."""
    folder = storage_path(storage)
    if not folder.is_dir():
        raise HistoryError(f"{folder}: no pytest-benchmark storage here; save runs with "
                           "`pytest -m benchmark --benchmark-autosave` or pass --benchmark-storage DIR")
    points: list[BenchPoint] = []
    for file in sorted(folder.glob("*/*.json")):  # the files pytest-benchmark itself would load
        points += read_benchmark_run(file, storage=folder)
    return points


def read_benchmark_run(file: Path, *, storage: Path | None = None) -> list[BenchPoint]:
    """The benchmarks of one saved run; a file that is not one fails naming the file and the fix."""
    from pricer.files import read_json

    raw = read_json(file, error=HistoryError)
    away = f"; move it out of {storage}" if storage else ""
    for key, kind in (("benchmarks", list), ("machine_info", dict), ("commit_info", dict), ("datetime", str)):
        if not isinstance(raw.get(key), kind):
            raise HistoryError(f"{file}: not a pytest-benchmark run (no {key!r} {kind.__name__}){away}")
    machine_info = raw["machine_info"]
    cpu = machine_info.get("cpu")
    machine = _machine(machine_info, where=str(file), cpu=cpu.get("brand_raw") if isinstance(cpu, dict) else cpu)
    when = _utc(raw["datetime"], where=f"{file}: datetime")
    commit = raw["commit_info"].get("id")
    dirty = raw["commit_info"].get("dirty")
    points = []
    for number, bench in enumerate(raw["benchmarks"]):
        where = f"{file}: benchmarks[{number}]"
        if not isinstance(bench, dict) or not isinstance(bench.get("name"), str):
            raise HistoryError(f"{where}: not a pytest-benchmark result (no 'name'){away}")
        stats = bench.get("stats")
        if not isinstance(stats, dict):
            raise HistoryError(f"{where}: no 'stats' object (a run saved with --benchmark-disable?){away}")
        mean, stddev = (_number(stats.get(k), where=f"{where}.stats.{k}") for k in ("mean", "stddev"))
        rounds = stats.get("rounds")
        if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
            raise HistoryError(f"{where}.stats.rounds: {rounds!r} is not a positive whole number")
        params = bench.get("params") if isinstance(bench.get("params"), dict) else {}
        extra = bench.get("extra_info") if isinstance(bench.get("extra_info"), dict) else {}
        width = params.get("pricer_width") or extra.get("width") or bench.get("group") or "-"
        points.append(BenchPoint(
            file=file, machine=machine, when=when, commit=commit if isinstance(commit, str) else None,
            dirty=dirty if isinstance(dirty, bool) else None, name=bench["name"].split("[", 1)[0], width=str(width),
            device=extra.get("device") if isinstance(extra.get("device"), str) else None, mean=mean, stddev=stddev,
            rounds=rounds, tokens_per_s=_optional_number(extra.get("tokens_per_s")),
            peak_memory_bytes=extra.get("peak_memory_bytes") if isinstance(extra.get("peak_memory_bytes"), int) else None,
        ))
    return points


def _utc(text: str, *, where: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise HistoryError(f"{where}: {text!r} is not an ISO 8601 date") from None
    return (when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)).astimezone(dt.timezone.utc)


def _number(value: Any, *, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise HistoryError(f"{where}: {value!r} is not a non-negative number")
    return float(value)


def _optional_number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# ---------------------------------------------------------------- the accuracy history


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
        return _utc(self.date, where="date")

    @property
    def machine_key(self) -> Machine:
        return _machine(self.machine, where="machine", cpu=self.machine.get("cpu"))

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
            if (value is None and optional) or (isinstance(value, kinds) and not isinstance(value, bool)) or (
                    bool in kinds and isinstance(value, bool)):
                return value
            raise HistoryError(f"{where}: field {name!r}: {value!r} is not {' or '.join(k.__name__ for k in kinds)}")

        if raw.get("format") != ACCURACY_FORMAT:
            raise HistoryError(f"{where}: not a pricer accuracy entry (no \"format\": \"{ACCURACY_FORMAT}\"); "
                               "is this the right file? (--pricer-history / --accuracy-history)")
        ci, item_errors = get("error_ci", (list,)), get("item_errors", (list,))
        numbers = [*ci, *item_errors]
        if len(ci) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
            raise HistoryError(f"{where}: fields 'error_ci' and 'item_errors' must be lists of numbers (2 for the CI)")
        machine, inputs = get("machine", (dict,)), get("inputs", (dict,))
        entry = cls(date=get("date", (str,)), model=get("model", (str,)), width=get("width", (str,)),
                    n=get("n", (int,)), error=float(get("error", (int, float))), error_ci=(float(ci[0]), float(ci[1])),
                    rmsle=float(get("rmsle", (int, float))), hits=float(get("hits", (int, float))),
                    unparsed=get("unparsed", (int,)), item_errors=tuple(float(v) for v in item_errors),
                    data_sha256=get("data_sha256", (str,), optional=True), inputs=inputs,
                    passed=get("passed", (bool,), optional=True), commit=get("commit", (str,), optional=True),
                    dirty=get("dirty", (bool,), optional=True), machine=machine)
        _utc(entry.date, where=f"{where}: field 'date'")  # parsed now, so a bad date or machine names its line
        _machine(machine, where=f"{where}: field 'machine'", cpu=machine.get("cpu"))
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
        data_sha256=fingerprint.decisive.get("data_sha256"), inputs=dict(fingerprint.decisive), passed=passed,
        commit=commit.get("commit"), dirty=commit.get("dirty"), machine=dict(machine),
    )


def read_accuracy(path: Path) -> list[AccuracyEntry]:
    """Every entry of an accuracy history; a bad line fails naming the file and line."""
    path = Path(path)
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
            raise HistoryError(f"{where}: not valid JSON ({exc.msg}); the line may be truncated or hand-edited: "
                               "restore it from version control or delete it") from None
        if not isinstance(raw, dict):
            raise HistoryError(f"{where}: expected a JSON object, found {type(raw).__name__}")
        entries.append(AccuracyEntry.from_dict(raw, where=where))
    return entries


def append_accuracy(path: Path, entries: Sequence[AccuracyEntry]) -> None:
    """Append entries atomically: the earlier bytes are kept as they are; a bad file fails and stays untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.parent):
        old = path.read_bytes() if path.exists() else b""
        _parse_accuracy(old, path)  # before writing: never bury a file we cannot read under new lines
        if old and not old.endswith(b"\n"):
            old += b"\n"
        new = "".join(json.dumps(e.to_dict(), sort_keys=True, ensure_ascii=False) + "\n" for e in entries)
        atomic_write_bytes(path, old + new.encode("utf-8"))


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on the folder: two sessions appending at once must not drop each other's lines."""
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


def record_session(path: Path, session: EvalSession, verdicts: Mapping[str, bool]) -> str:
    """Append one entry per gated width of the session; returns the line to print."""
    from pricer.fingerprint import commit_info, today

    commit, machine, date = commit_info(session.root), this_machine(), today()
    entries = [accuracy_entry(model=session.settings.model_name, width=width, run=session.run(width),
                              fingerprint=session.fingerprint(width), passed=passed, commit=commit, machine=machine,
                              date=date)
               for width, passed in verdicts.items()]
    append_accuracy(path, entries)
    return f"{path}: appended {len(entries)} accuracy entries ({', '.join(verdicts)})"


# ---------------------------------------------------------------- changes between runs


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """A run in its series, with the relative change from the series' previous run and whether it is significant."""

    run: BenchPoint | AccuracyEntry
    when: dt.datetime
    change: float | None  # now / before - 1; None for a series' first run
    significant: bool


def latency_change(before: BenchPoint, now: BenchPoint, *, min_change: float = LATENCY_MIN_CHANGE) -> tuple[float, bool]:
    """(relative change of the mean, significant): past min_change and Welch p < LATENCY_ALPHA over the rounds."""
    change = now.mean / before.mean - 1 if before.mean else math.inf
    if abs(change) < min_change:
        return change, False
    if min(before.rounds, now.rounds) < 2 or before.stddev == now.stddev == 0:
        return change, True  # no spread to test against: the threshold alone decides
    from scipy import stats

    p = stats.ttest_ind_from_stats(now.mean, now.stddev, now.rounds, before.mean, before.stddev, before.rounds,
                                   equal_var=False).pvalue
    return change, bool(p < LATENCY_ALPHA)


def error_change(before: AccuracyEntry, now: AccuracyEntry) -> tuple[float, bool]:
    """(relative change of Error, significant): on the same items the paired 95% CI of the per-item change
    excludes 0 (as the gate computes it); otherwise the two runs' 95% CIs do not overlap."""
    change = now.error / before.error - 1 if before.error else math.inf
    paired = (before.data_sha256 is not None and before.data_sha256 == now.data_sha256
              and len(before.item_errors) == len(now.item_errors) > 1)
    if paired:
        from pricer.gate import paired_delta

        low, high = paired_delta(before.item_errors, now.item_errors, confidence=ERROR_CONFIDENCE).ci
        return change, low > 0 or high < 0
    return change, now.error_ci[0] > before.error_ci[1] or now.error_ci[1] < before.error_ci[0]


def _steps(runs: Sequence[Any], when: Any, compare: Any) -> tuple[Step, ...]:
    ordered = sorted(runs, key=when)
    steps = [Step(run=ordered[0], when=when(ordered[0]), change=None, significant=False)] if ordered else []
    for before, now in zip(ordered, ordered[1:]):
        change, significant = compare(before, now)
        steps.append(Step(run=now, when=when(now), change=change, significant=significant))
    return tuple(steps)


# ---------------------------------------------------------------- per machine


@dataclass(frozen=True, slots=True, kw_only=True)
class Series:
    """One line over time: a benchmark at a width (and device), or a model's Error at a width."""

    kind: str  # "latency" or "error"
    width: str
    label: str
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class MachineHistory:
    """Everything recorded on one machine."""

    machine: Machine
    series: tuple[Series, ...]
    benchmark_runs: int
    accuracy_entries: int

    @property
    def widths(self) -> tuple[str, ...]:
        return _ordered_widths({s.width for s in self.series})


@dataclass(frozen=True, slots=True, kw_only=True)
class History:
    """The histories of every machine found, and where they were read from."""

    machines: tuple[MachineHistory, ...]
    sources: tuple[str, ...]


def _ordered_widths(widths: set[str]) -> tuple[str, ...]:
    return tuple(sorted(widths, key=lambda w: (WIDTH_ORDER.index(w) if w in WIDTH_ORDER else len(WIDTH_ORDER), w)))


def build_history(points: Sequence[BenchPoint], entries: Sequence[AccuracyEntry], *, sources: Sequence[str] = (),
                  min_change: float = LATENCY_MIN_CHANGE) -> History:
    """Group runs by machine, then by series; each run is compared with the previous run of its series."""
    machines = list(dict.fromkeys([p.machine for p in points] + [e.machine_key for e in entries]))
    result = []
    for machine in machines:
        mine = [p for p in points if p.machine == machine]
        accuracy = [e for e in entries if e.machine_key == machine]
        series: list[Series] = []
        # The test name and device join the label only where they vary, so the usual case reads "4bit".
        names, devices = {p.name for p in mine}, {p.device for p in mine}
        for key in sorted({(p.width, p.name, p.device or "") for p in mine}):
            width, name, device = key
            label = " ".join([width] + ([device] if len(devices) > 1 else []) + ([name] if len(names) > 1 else []))
            runs = [p for p in mine if (p.width, p.name, p.device or "") == key]
            steps = _steps(runs, lambda p: p.when, lambda a, b: latency_change(a, b, min_change=min_change))
            series.append(Series(kind="latency", width=width, label=label, steps=steps))
        models = {e.model for e in accuracy}
        for model, width in sorted({(e.model, e.width) for e in accuracy}):
            runs = [e for e in accuracy if (e.model, e.width) == (model, width)]
            label = f"{model} {width}" if len(models) > 1 else width
            series.append(Series(kind="error", width=width, label=label,
                                 steps=_steps(runs, lambda e: e.when, error_change)))
        order = {w: i for i, w in enumerate(_ordered_widths({s.width for s in series}))}
        series.sort(key=lambda s: (order[s.width], s.kind != "latency", s.label))
        result.append(MachineHistory(machine=machine, series=tuple(series),
                                     benchmark_runs=len({p.file for p in mine}), accuracy_entries=len(accuracy)))
    return History(machines=tuple(result), sources=tuple(sources))


def load_history(*, storage: str | Path | None = None, accuracy: Path | None = None,
                 min_change: float = LATENCY_MIN_CHANGE) -> History:
    """Read both stores (None: the default place, which may be absent); everything is read before anything is shown."""
    folder = storage_path(storage) if storage is not None else DEFAULT_STORAGE
    accuracy_file = Path(accuracy) if accuracy is not None else DEFAULT_ACCURACY
    sources = []
    points: list[BenchPoint] = []
    if storage is not None or folder.is_dir():
        points = read_benchmarks(folder)
        sources.append(f"benchmarks: {len({p.file for p in points})} saved runs in {folder}")
    else:
        sources.append(f"benchmarks: none ({folder} does not exist)")
    entries: list[AccuracyEntry] = []
    if accuracy is not None or accuracy_file.exists():
        entries = read_accuracy(accuracy_file)
        sources.append(f"accuracy: {len(entries)} entries in {accuracy_file}")
    else:
        sources.append(f"accuracy: none ({accuracy_file} does not exist)")
    if not points and not entries:
        raise HistoryError(f"nothing to show: no saved benchmark runs in {folder} (save some with "
                           f"`pytest -m benchmark --benchmark-autosave`) and no entries in {accuracy_file} (append some "
                           f"with `pytest -m eval --pricer-history {accuracy_file}`)")
    return build_history(points, entries, sources=sources, min_change=min_change)


# ---------------------------------------------------------------- the table


HEADERS = ["series", "run (UTC)", "commit", "latency", "change", "tokens/s", "Error", "95% CI", "change"]


def format_history(history: History, *, min_change: float = LATENCY_MIN_CHANGE) -> str:
    """One section per machine: a row per run and series, in time order within each width."""
    from pricer.report import format_table

    lines = [*history.sources]
    if len(history.machines) > 1:
        lines.append(f"{len(history.machines)} machines: each is shown apart; runs are only compared on one machine")
    for mh in history.machines:
        lines += ["", f"machine {mh.machine.label}",
                  f"  {_count(mh.benchmark_runs, 'benchmark run')}, {_count(mh.accuracy_entries, 'accuracy entry')}"]
        rows = []
        for width in mh.widths:
            steps = [(s, step) for s in mh.series if s.width == width for step in s.steps]
            for series, step in sorted(steps, key=lambda pair: (pair[1].when, pair[0].kind != "latency")):
                rows.append(_row(series, step))
        lines.append(format_table(HEADERS, rows))
    lines += ["", f"* significant: latency moved by {min_change:.0%} or more with Welch p < {LATENCY_ALPHA} over the "
              f"rounds; Error's paired {ERROR_CONFIDENCE:.0%} CI excludes 0 (same items), else the CIs do not overlap",
              "+ after a commit: the run had uncommitted changes"]
    return "\n".join(lines)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun[:-1] + 'ies' if noun.endswith('y') else noun + 's'}"


def _row(series: Series, step: Step) -> list[str]:
    run = step.run
    commit = (run.commit or "?")[:8] + ("+" if run.dirty else " ")  # the space keeps the hashes aligned
    change = "" if step.change is None else f"{step.change:+.1%}" + (" *" if step.significant else "  ")
    when = step.when.strftime("%Y-%m-%d %H:%M")
    if isinstance(run, BenchPoint):
        tokens = f"{run.tokens_per_s:,.1f}" if run.tokens_per_s is not None else "-"
        return [series.label, when, commit, f"{run.mean:.3f} s", change, tokens, "", "", ""]
    low, high = run.error_ci
    return [series.label, when, commit, "", "", "", f"${run.error:,.2f}", f"[{low:,.2f}, {high:,.2f}]", change]


# ---------------------------------------------------------------- the chart


def history_chart(path: Path, history: History) -> None:
    """A panel per machine (row) and width (column): latency (left axis) and Error (right axis) on one time axis,
    significant changes ringed in red."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from pricer.charts import chart_format

    fmt = chart_format(path)
    columns = max(len(mh.widths) for mh in history.machines)
    rows = len(history.machines)
    # A Figure on its own canvas, not pyplot: no global figure list, no GUI backend (as pricer.charts).
    figure = Figure(figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows + 0.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, sharex=True, squeeze=False)
    for row, mh in enumerate(history.machines):
        for column in range(columns):
            ax = axes[row][column]
            if column >= len(mh.widths):
                ax.set_visible(False)
                continue
            _panel(ax, mh, mh.widths[column])
    figure.legend(handles=[
        Line2D([], [], color=LATENCY_COLOR, marker="o", label="latency (s), mean ± stddev"),
        Line2D([], [], color=ERROR_COLOR, marker="s", label="Error ($), 95% CI"),
        Line2D([], [], color=CHANGE_COLOR, marker="o", markerfacecolor="none", linestyle="none", markersize=12,
               label="significant change from the previous run"),
    ], loc="outside lower center", ncols=3)
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "pricer"}):
        figure.savefig(buffer, format=fmt, metadata={"png": {"Software": None}, "svg": {"Date": None, "Creator": None},
                                                     "pdf": {"CreationDate": None, "Creator": None,
                                                             "Producer": None}}[fmt])
    atomic_write_bytes(Path(path), buffer.getvalue())


def _panel(ax: Any, mh: MachineHistory, width: str) -> None:
    import matplotlib.dates as mdates

    twin = ax.twinx()
    styles = ("-", "--", ":", "-.")
    latency = [s for s in mh.series if s.width == width and s.kind == "latency"]
    errors = [s for s in mh.series if s.width == width and s.kind == "error"]
    for number, series in enumerate(latency):
        x = [step.when for step in series.steps]
        y = [step.run.mean for step in series.steps]
        ax.errorbar(x, y, yerr=[step.run.stddev for step in series.steps], color=LATENCY_COLOR, marker="o",
                    linestyle=styles[number % len(styles)], capsize=3, label=series.label)
        _ring(ax, series)
    for number, series in enumerate(errors):
        x = [step.when for step in series.steps]
        y = [step.run.error for step in series.steps]
        spread = [[step.run.error - step.run.error_ci[0] for step in series.steps],
                  [step.run.error_ci[1] - step.run.error for step in series.steps]]
        twin.errorbar(x, y, yerr=spread, color=ERROR_COLOR, marker="s", linestyle=styles[number % len(styles)],
                      capsize=3, label=series.label)
        _ring(twin, series)
    # From 0, with room above the highest bar: a slowdown should look as large as it is, no larger.
    if latency:
        ax.set_ylim(0, 1.15 * max(st.run.mean + st.run.stddev for s in latency for st in s.steps) or 1)
    else:
        ax.set_yticks([])
    if errors:
        twin.set_ylim(0, 1.15 * max(st.run.error_ci[1] for s in errors for st in s.steps) or 1)
    else:
        twin.set_yticks([])  # no Error recorded at this width on this machine: no empty scale
    ax.set_ylabel("latency (s)" if latency else "", color=LATENCY_COLOR)
    twin.set_ylabel("Error ($)" if errors else "", color=ERROR_COLOR)
    ax.set_title(f"{width} on {mh.machine.label}", fontsize=8, parse_math=False)
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.grid(alpha=0.3)


def _ring(ax: Any, series: Series) -> None:
    marked = [step for step in series.steps if step.significant]
    if marked:
        values = [step.run.mean if series.kind == "latency" else step.run.error for step in marked]
        ax.scatter([step.when for step in marked], values, s=180, facecolors="none", edgecolors=CHANGE_COLOR,
                   linewidths=2, zorder=5)
