"""Stored baselines in `baselines/<model>/<bits>bit.json`: read strictly, write atomically, keep why they moved."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pricer.engines.evaluate import RunResult
from pricer.errors import BaselineError, OutputError, PricerError
from pricer.files import (dumps_json, existing_head, json_object, read_json, read_text, today, utc_date,
                          write_json)
from pricer.store.fingerprint import Fingerprint, commit_info
from pricer.task.metrics import Metrics

FORMAT = 1
NOT_A_BASELINE = ("JSON Lines (one object per line, as guesses for `pricer compare RUN` are), not a baseline, which is "
                  "one JSON object as --update-baselines and --pricer-save-runs write it")
METRIC_FIELDS = ("n", "error", "error_ci", "rmsle", "hits", "mse", "r2", "unparsed")


@dataclass(frozen=True, slots=True, kw_only=True)
class BaselineItem:
    index: int
    title: str
    truth: float
    guess: float
    completion: str | None
    parsed: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEntry:
    """An earlier version of the baseline: when, why, what its metrics were, how it was judged against the one it
    replaced and the trade-off that let it in when it was worse."""

    date: str
    reason: str
    metrics: Mapping[str, Any]
    verdict: str = ""
    trade_off: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Anchor:
    """Where drift is measured from: the best state accepted so far (the first baseline, then each later one that
    was better than the anchor of its day, or stored as worse on purpose). Each rewrite is judged against the one
    it replaces; small losses that add up are judged against this."""

    name: str
    date: str
    commit: str | None
    reason: str
    items: tuple[BaselineItem, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Baseline:
    path: Path
    name: str
    fingerprint: Fingerprint
    metrics: Mapping[str, Any]
    items: tuple[BaselineItem, ...]
    date: str
    commit: str | None
    reason: str
    history: tuple[HistoryEntry, ...]
    verdict: str = ""  # how this baseline was judged against the one it replaced
    trade_off: str = ""  # why it was stored although judged worse (--pricer-accept-worse)
    anchor: Anchor | None = None

    def anchored(self) -> Baseline | None:
        """The anchor as a baseline of these items, to judge drift against; None without one."""
        if self.anchor is None:
            return None
        return Baseline(path=self.path, name=self.anchor.name, fingerprint=self.fingerprint, metrics=self.metrics,
                        items=self.anchor.items, date=self.anchor.date, commit=self.anchor.commit,
                        reason=self.anchor.reason, history=())


def baseline_path(root: Path, model: str, width: str, *, hardware_class: str | None = None) -> Path:
    """`root/<model slug>/<class>/<width>.json`, e.g. baselines/smollm2-135m-instruct/cpu-float32/4bit.json; a
    classic predictor, the same on every machine class, has no class folder: baselines/bow/classic.json."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model.strip("/")).strip("-").lower() or "model"
    folder = Path(root) / slug
    return (folder / hardware_class if hardware_class else folder) / f"{width}.json"


def metrics_to_dict(metrics: Metrics) -> dict[str, Any]:
    """The stored metrics; one that is undefined for the run (r² of a single item) is stored as null."""
    return {name: list(v) if isinstance(v := getattr(metrics, name), tuple) else _defined(v) for name in METRIC_FIELDS}


def _defined(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _checksum(body: Mapping[str, Any]) -> str:
    # Over the exact text we store, so any hand edit of a stored value is caught.
    return hashlib.sha256(dumps_json(body).encode("utf-8")).hexdigest()


def write_baseline(
    path: Path, *, run: RunResult, fingerprint: Fingerprint, reason: str, previous: Baseline | None,
    verdict: str = "", trade_off: str = "", new_anchor: bool = False,
) -> None:
    """Store a run as the baseline, keeping the previous one's metrics, reason and verdict in its history, and the
    anchor drift is measured from. A baseline without an anchor is its own: the first one, a trade-off accepted on
    purpose, and a run better than the anchor (`new_anchor`); the next rewrite anchors on it."""
    if not reason.strip():
        raise BaselineError(f"{path}: a baseline is rewritten only with a reason (--pricer-reason)")
    history = list(previous.history) if previous else []
    if previous:
        history.append(HistoryEntry(date=previous.date, reason=previous.reason, metrics=previous.metrics,
                                    verdict=previous.verdict, trade_off=previous.trade_off))
    commit = commit_info(Path(path).parent)
    anchor = None if trade_off or new_anchor or previous is None else (previous.anchor or _anchor_of(previous))
    if anchor is not None and [(a.index, a.truth) for a in anchor.items] != [(i.index, i.price) for i in run.items]:
        anchor = None  # other items: drift on them cannot be paired
    body = {
        "format": FORMAT,
        "name": run.name,
        "fingerprint": fingerprint.to_dict(),
        "metrics": metrics_to_dict(run.metrics),
        "items": [
            {"index": item.index, "title": item.title, "truth": item.price, "guess": p.guess,
             "completion": p.completion, "parsed": p.parsed}
            for item, p in zip(run.items, run.predictions)
        ],
        "date": today(),
        "commit": commit["commit"],
        "reason": reason.strip(),
        "history": [{"date": h.date, "reason": h.reason, "metrics": dict(h.metrics)} | _judged(h.verdict, h.trade_off)
                    for h in history],
    } | _judged(verdict, trade_off.strip())
    if anchor is not None:
        body["anchor"] = {"name": anchor.name, "date": anchor.date, "commit": anchor.commit, "reason": anchor.reason,
                          "items": [_item_dict(b) for b in anchor.items]}
    body = json.loads(dumps_json(body))  # the checksum covers the rounded values actually stored
    write_json(path, {**body, "checksum": _checksum(body)})


def write_run(path: Path, **baseline: Any) -> None:
    """Store a run in the baseline format (pricer eval --save-run, pytest --pricer-save-runs): as `write_baseline`,
    over nothing or over a run pricer stored, never over another program's file (a PNG, a pyproject.toml)."""
    problem = foreign_file(path)
    if problem:
        raise OutputError(f"{path}: {problem}")
    write_baseline(path, **baseline)


def foreign_file(path: Path) -> str | None:
    """Why a run must not be written over `path`, else None: an existing non-empty regular file that is not one
    pricer stored in the baseline format (a JSON object with its format and checksum)."""
    try:
        head = existing_head(path, 64)
    except OutputError:
        return None  # not a file to replace: the write names what the path is
    if head is None:
        return None  # nothing to lose: a stream is written as it is, a new or empty file is ours to fill
    try:
        raw = json.loads(read_text(path)) if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else None
    except (OSError, PricerError, ValueError):
        raw = None  # unreadable, or not JSON: not a run we can tell is ours
    if isinstance(raw, dict) and "format" in raw and "checksum" in raw:
        return None
    return ("an existing file that is not a run pricer stored; a run replaces only a run: name a new file, or "
            "remove this one first")


def _anchor_of(baseline: Baseline) -> Anchor:
    """A baseline as the anchor of the next: its guesses, date and reason (with the trade-off that let it in)."""
    reason = f"{baseline.reason}; accepted worse: {baseline.trade_off}" if baseline.trade_off else baseline.reason
    return Anchor(name=baseline.name, date=baseline.date, commit=baseline.commit, reason=reason, items=baseline.items)


def _judged(verdict: str, trade_off: str) -> dict[str, str]:
    """The optional verdict and trade-off fields, stored only when set: files without them stay as they were."""
    return {k: v for k, v in (("verdict", verdict), ("trade_off", trade_off)) if v}


def _item_dict(b: BaselineItem) -> dict[str, Any]:
    return {"index": b.index, "title": b.title, "truth": b.truth, "guess": b.guess, "completion": b.completion,
            "parsed": b.parsed}


def read_baseline(path: Path, *, text: str | None = None, where: str | None = None) -> Baseline:
    """Read a baseline, failing with the file's name when it is missing, truncated or hand-edited; `text`: its
    content as read elsewhere (a git ref), named `where` in errors."""
    where = where or str(path)
    try:
        raw = read_json(path, error=BaselineError) if text is None else json_object(text, where=where, error=BaselineError)
    except BaselineError:
        if text is None and json_lines(path):  # not a damaged baseline, which "may be truncated" would suggest
            raise BaselineError(f"{path}: {NOT_A_BASELINE}") from None
        raise
    if "format" not in raw and "guess" in raw:  # JSON Lines of one row
        raise BaselineError(f"{where}: {NOT_A_BASELINE}")
    stored_sum = raw.pop("checksum", None)
    _refuse_non_finite(raw, where=where)  # before the checksum, which cannot be computed over them
    if raw.get("format") != FORMAT:
        raise BaselineError(f"{where}: format {raw.get('format')!r} is not {FORMAT}; regenerate it with --update-baselines")
    if stored_sum != _checksum(raw):
        raise BaselineError(
            f"{where}: checksum mismatch: the file was edited by hand or damaged; "
            f"restore it from git or regenerate it with --update-baselines --pricer-reason '...'"
        )
    metrics = _field(raw, "metrics", dict, where)
    missing = [name for name in METRIC_FIELDS if name not in metrics]
    if missing:
        raise BaselineError(f"{where}: metrics lack {', '.join(missing)}")
    items = tuple(_item(row, where=f"{where}: items[{i}]") for i, row in enumerate(_field(raw, "items", list, where)))
    if len(items) != metrics["n"]:
        raise BaselineError(f"{where}: {len(items)} items but metrics.n is {metrics['n']}")
    return Baseline(
        path=Path(path),
        name=_field(raw, "name", str, where),
        fingerprint=Fingerprint.from_dict(_field(raw, "fingerprint", dict, where), where=where),
        metrics=metrics,
        items=items,
        date=_date(raw, where),
        commit=_commit(raw, where),
        reason=_field(raw, "reason", str, where),
        history=tuple(
            HistoryEntry(date=_date(h, where), reason=_field(h, "reason", str, where),
                         metrics=_field(h, "metrics", dict, where), verdict=_optional(h, "verdict", where),
                         trade_off=_optional(h, "trade_off", where))
            for h in _field(raw, "history", list, where)
        ),
        verdict=_optional(raw, "verdict", where), trade_off=_optional(raw, "trade_off", where),
        anchor=_anchor(raw.get("anchor"), items, where=f"{where}: anchor"),
    )


def _optional(raw: Mapping[str, Any], name: str, where: str) -> str:
    value = raw.get(name, "")
    if not isinstance(value, str):
        raise BaselineError(f"{where}: field {name!r} must be a str, found {value!r:.60}")
    return value


def _anchor(raw: Any, items: Sequence[BaselineItem], *, where: str) -> Anchor | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise BaselineError(f"{where}: must be an object")
    anchored = tuple(_item(row, where=f"{where}: items[{i}]") for i, row in enumerate(_field(raw, "items", list, where)))
    if [(a.index, a.truth) for a in anchored] != [(b.index, b.truth) for b in items]:
        raise BaselineError(f"{where}: its items are not the baseline's (index and truth, in order)")
    return Anchor(name=_field(raw, "name", str, where), date=_date(raw, where),
                  commit=_commit(raw, where), reason=_field(raw, "reason", str, where), items=anchored)


def _date(raw: Mapping[str, Any], where: str) -> str:
    """A stored date (of a baseline, an anchor, a history entry): ISO 8601 text, as `today` writes it."""
    date = _field(raw, "date", str, where)
    utc_date(date, where=f"{where}: field 'date'", error=BaselineError)
    return date


def _commit(raw: Mapping[str, Any], where: str) -> str | None:
    """A stored commit: the git commit's id, or null outside a repository."""
    commit = raw.get("commit")
    if commit is not None and not (isinstance(commit, str) and commit.strip()):
        raise BaselineError(f"{where}: field 'commit' must be a commit id or null, found {commit!r:.60}")
    return commit


def _refuse_non_finite(value: Any, *, where: str, field: str = "") -> None:
    """NaN or Infinity anywhere in a stored file (JSON has neither; a hand edit or another writer put it there)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise BaselineError(f"{where}: field {field!r} is {value!r}, not a number: the file was edited by hand or "
                            "damaged; restore it from git or regenerate it with --update-baselines --pricer-reason '...'")
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        _refuse_non_finite(child, where=where, field=f"{field}[{key}]" if isinstance(key, int) else
                           f"{field}.{key}" if field else str(key))


def json_lines(path: Path) -> bool:
    """Whether a file is JSON Lines (its first line a whole JSON object), such as the guesses `pricer compare` takes."""
    try:
        first = next((line for line in read_text(path).splitlines() if line.strip()), "")
        return isinstance(json.loads(first), dict)
    except (PricerError, ValueError):
        return False


def unused_baselines(folder: Path, used: Sequence[Path]) -> list[Path]:
    """Stored baselines in `folder` (a model's class folder) that no test of this run compared against."""
    seen = {Path(p).resolve() for p in used}
    return sorted(p for p in Path(folder).glob("*.json") if p.resolve() not in seen)


def _field(raw: Mapping[str, Any], name: str, kind: type, where: str) -> Any:
    value = raw.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise BaselineError(f"{where}: field {name!r} must be a {kind.__name__}, found {value!r:.60}")
    return value


def _item(row: Any, *, where: str) -> BaselineItem:
    if not isinstance(row, dict):
        raise BaselineError(f"{where}: must be an object")
    number = (int, float)
    for name, kind in (("index", int), ("title", str), ("truth", number), ("guess", number), ("parsed", bool)):
        if not isinstance(row.get(name), kind) or (name != "parsed" and isinstance(row.get(name), bool)):
            raise BaselineError(f"{where}: field {name!r} is {row.get(name)!r}")
    if not row["truth"] > 0:
        raise BaselineError(f"{where}: field 'truth' is {row['truth']!r}, not a positive price")
    if not row["guess"] >= 0:  # as the scores take it: an answer without a price is stored as a guess of 0
        raise BaselineError(f"{where}: field 'guess' is {row['guess']!r}, not a price of 0 or more")
    if row.get("completion") is not None and not isinstance(row["completion"], str):
        raise BaselineError(f"{where}: field 'completion' is {row['completion']!r}")
    return BaselineItem(index=row["index"], title=row["title"], truth=float(row["truth"]), guess=float(row["guess"]),
                        completion=row.get("completion"), parsed=row["parsed"])
