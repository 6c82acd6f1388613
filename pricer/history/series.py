"""Histories over runs: the saved benchmark runs and the accuracy entries grouped per machine and series, each run
compared with the earlier runs of its series (pricer.history.changes); accuracy entries of one commit are one run."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pricer.engines.widths import ORDER
from pricer.errors import HistoryError
from pricer.history.accuracy_history import DEFAULT_ACCURACY, AccuracyEntry, read_accuracy
from pricer.history.benchmark_runs import DEFAULT_STORAGE, BenchPoint, read_benchmarks, storage_path
from pricer.history.changes import LATENCY_MIN_CHANGE, error_change, latency_change
from pricer.store.machines import Machine


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """A run in its series, with its change and whether it is significant (see pricer.history.changes)."""

    run: BenchPoint | AccuracyEntry
    when: dt.datetime  # an accuracy entry shows its run's time: the widths of one commit line up
    change: float | None  # latency: against the earlier runs' median; Error: against the previous run; None: first
    significant: bool
    limit: float | None = None  # latency: the smallest change that counted here
    few_runs: bool = False  # latency: too few earlier runs to know their spread, the conservative rule decided


@dataclass(frozen=True, slots=True, kw_only=True)
class AccuracyRun:
    """The entries of one commit on one machine, from one or several files: the widths of a CI matrix, one job
    each, are one run. A width seen again on the same commit starts the next run (the gate was run again)."""

    machine: Machine
    commit: str | None
    dirty: bool | None
    when: dt.datetime  # its first entry's date
    entries: tuple[AccuracyEntry, ...]


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
    accuracy_runs: int
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
    return tuple(sorted(widths, key=lambda w: (ORDER.get(w, len(ORDER)), w)))


def accuracy_runs(entries: Sequence[AccuracyEntry]) -> list[AccuracyRun]:
    """Entries grouped by machine and commit, in time order; an entry equal to one already in its run (the same
    file read twice) counts once."""
    groups: dict[tuple[Machine, str | None, bool | None], list[list[AccuracyEntry]]] = {}
    for entry in sorted(entries, key=lambda e: e.when):
        runs = groups.setdefault((entry.machine_key, entry.commit, entry.dirty), [[]])
        current = runs[-1]
        same = [e for e in current if (e.model, e.width) == (entry.model, entry.width)]
        if entry in same:
            continue
        if same:
            runs.append(current := [])
        current.append(entry)
    result = [AccuracyRun(machine=machine, commit=commit, dirty=dirty, when=run[0].when, entries=tuple(run))
              for (machine, commit, dirty), runs in groups.items() for run in runs]
    return sorted(result, key=lambda r: r.when)


def _latency_steps(runs: Sequence[BenchPoint], *, min_change: float) -> tuple[Step, ...]:
    ordered = sorted(runs, key=lambda p: p.when)
    steps = []
    for number, now in enumerate(ordered):
        if not number:
            steps.append(Step(run=now, when=now.when, change=None, significant=False))
            continue
        found = latency_change(ordered[:number], now, min_change=min_change)
        steps.append(Step(run=now, when=now.when, change=found.change, significant=found.significant,
                          limit=found.limit, few_runs=found.spread is None))
    return tuple(steps)


def _error_steps(runs: Sequence[tuple[dt.datetime, AccuracyEntry]]) -> tuple[Step, ...]:
    steps = []
    for number, (when, now) in enumerate(runs):
        if not number:
            steps.append(Step(run=now, when=when, change=None, significant=False))
            continue
        change, significant = error_change(runs[number - 1][1], now)
        steps.append(Step(run=now, when=when, change=change, significant=significant))
    return tuple(steps)


def build_history(points: Sequence[BenchPoint], entries: Sequence[AccuracyEntry], *, sources: Sequence[str] = (),
                  min_change: float = LATENCY_MIN_CHANGE) -> History:
    """Group runs by machine, then by series; each run is compared with the earlier runs of its series."""
    runs = accuracy_runs(entries)
    machines = list(dict.fromkeys([p.machine for p in points] + [r.machine for r in runs]))
    result = []
    for machine in machines:
        mine = [p for p in points if p.machine == machine]
        my_runs = [r for r in runs if r.machine == machine]
        series: list[Series] = []
        # The test name and device join the label only where they vary, so the usual case reads "4bit".
        names, devices = {p.name for p in mine}, {p.device for p in mine}
        for key in sorted({(p.width, p.name, p.device or "") for p in mine}):
            width, name, device = key
            label = " ".join([width] + ([device] if len(devices) > 1 else []) + ([name] if len(names) > 1 else []))
            steps = _latency_steps([p for p in mine if (p.width, p.name, p.device or "") == key],
                                   min_change=min_change)
            series.append(Series(kind="latency", width=width, label=label, steps=steps))
        accuracy = [(run.when, e) for run in my_runs for e in run.entries]
        models = {e.model for _, e in accuracy}
        for model, width in sorted({(e.model, e.width) for _, e in accuracy}):
            label = f"{model} {width}" if len(models) > 1 else width
            steps = _error_steps([(when, e) for when, e in accuracy if (e.model, e.width) == (model, width)])
            series.append(Series(kind="error", width=width, label=label, steps=steps))
        order = {w: i for i, w in enumerate(_ordered_widths({s.width for s in series}))}
        series.sort(key=lambda s: (order[s.width], s.kind != "latency", s.label))
        result.append(MachineHistory(machine=machine, series=tuple(series), benchmark_runs=len({p.file for p in mine}),
                                     accuracy_runs=len(my_runs), accuracy_entries=len(accuracy)))
    return History(machines=tuple(result), sources=tuple(sources))


def load_history(*, storage: str | Path | None = None, accuracy: Path | Sequence[Path] | None = None,
                 min_change: float = LATENCY_MIN_CHANGE) -> History:
    """Read both stores (None: the default place, which may be absent; several accuracy files: the jobs of a CI
    matrix); everything is read before anything is shown."""
    folder = storage_path(storage) if storage is not None else DEFAULT_STORAGE
    sources = []
    points: list[BenchPoint] = []
    if storage is not None or folder.is_dir():
        points = read_benchmarks(folder)
        sources.append(f"benchmarks: {len({p.file for p in points})} saved runs in {folder}")
    else:
        sources.append(f"benchmarks: none ({folder} does not exist)")
    if accuracy is None:
        files = [DEFAULT_ACCURACY] if DEFAULT_ACCURACY.exists() else []
    else:
        files = [Path(accuracy)] if isinstance(accuracy, (str, Path)) else [Path(p) for p in accuracy]
    entries: list[AccuracyEntry] = []
    for file in dict.fromkeys(files):  # a file named twice is read once
        found = read_accuracy(file)
        entries += found
        sources.append(f"accuracy: {len(found)} entries in {file}")
    if not files:
        sources.append(f"accuracy: none ({DEFAULT_ACCURACY} does not exist)")
    if not points and not entries:
        shown = ", ".join(map(str, files)) or DEFAULT_ACCURACY
        raise HistoryError(f"nothing to show: no saved benchmark runs in {folder} (save some with "
                           f"`pytest -m benchmark --benchmark-autosave`) and no entries in {shown} (append some "
                           f"with `pytest -m eval --pricer-history {DEFAULT_ACCURACY}`)")
    return build_history(points, entries, sources=sources, min_change=min_change)
