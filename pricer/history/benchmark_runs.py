"""Saved pytest-benchmark runs read back: one BenchPoint per benchmark of every run in a --benchmark-storage folder,
with the machine, commit and round statistics; a file that is not such a run fails naming the file and the fix."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pricer.errors import HistoryError
from pricer.files import kind, utc_date
from pricer.store.machines import Machine, machine_of

DEFAULT_STORAGE = Path(".benchmarks")  # pytest-benchmark's default --benchmark-storage
DEFAULT_STORAGE_URI = "file://./.benchmarks"  # the same, as pytest-benchmark's option holds it


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchPoint:
    """One benchmark of one saved pytest-benchmark run; times in seconds, by the run's --benchmark-timer."""

    file: Path
    machine: Machine
    when: dt.datetime  # UTC
    commit: str | None
    dirty: bool | None
    name: str  # the test's name without its parameters
    width: str
    device: str | None
    mean: float
    stddev: float
    median: float  # the run's figure in the history: one slow round does not move it
    iqr: float
    fastest: float  # the run's fastest and slowest rounds
    slowest: float
    rounds: int
    probe: float | None  # the speed probe's median between rounds (pricer.history.timing), in the same timer's seconds
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
    if folder.is_symlink() and not folder.exists():  # a loop of links, or a link to a folder gone
        raise HistoryError(f"{folder}: {kind(folder)}, not a folder of pytest-benchmark runs")
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
    machine = machine_of(machine_info, where=str(file), cpu=cpu.get("brand_raw") if isinstance(cpu, dict) else cpu)
    when = parse_utc(raw["datetime"], where=f"{file}: datetime")
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
        # pytest-benchmark has written these since its first versions; a hand-made file may lack them
        median, iqr, low, high = (mean if stats.get(k) is None else _number(stats[k], where=f"{where}.stats.{k}")
                                  for k in ("median", "iqr", "min", "max"))
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
            median=median, iqr=iqr, fastest=min(low, median), slowest=max(high, median), rounds=rounds,
            probe=_positive_or_none(extra.get("speed_probe_s")), tokens_per_s=_optional_number(extra.get("tokens_per_s")),
            peak_memory_bytes=extra.get("peak_memory_bytes") if isinstance(extra.get("peak_memory_bytes"), int) else None,
        ))
    return points


def parse_utc(text: str, *, where: str) -> dt.datetime:
    """An ISO 8601 date as an aware UTC datetime; a bad one fails naming `where`, as a history error."""
    return utc_date(text, where=where, error=HistoryError)


def _number(value: Any, *, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise HistoryError(f"{where}: {value!r} is not a non-negative number")
    return float(value)


def _positive_or_none(value: Any) -> float | None:
    number = _optional_number(value)
    return number if number is not None and math.isfinite(number) and number > 0 else None


def _optional_number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def absent_storage(here: Path) -> Path | None:
    """pytest-benchmark's default storage folder under `here` while it does not exist yet; None once it does."""
    folder = Path(here) / DEFAULT_STORAGE
    return None if folder.exists() else folder


def remove_unused_storage(folder: Path | None, *, storage: str | None) -> None:
    """Remove the default storage folder that did not exist when pytest started, if it is still empty:
    pytest-benchmark makes it in every pytest run (`pytest --help` too), whether a benchmark is saved or not."""
    if folder is None or storage not in (None, DEFAULT_STORAGE_URI):
        return
    try:
        folder.rmdir()  # only an empty folder; one a benchmark was saved in stays
    except OSError:
        pass
