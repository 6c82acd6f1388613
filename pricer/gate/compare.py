"""`pricer compare`: the gate's verdict on predictions made anywhere (a baseline file or JSON Lines of guesses),
matched to a stored baseline's items by index, without running a model."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pricer.engines.evaluate import RunResult, score_run
from pricer.engines.predict import Prediction
from pricer.errors import BaselineError, DataError
from pricer.files import read_text
from pricer.gate.references import anchor_label, becomes_anchor, verdict_word, with_references
from pricer.gate.verdict import GateConfig, Verdict, compare
from pricer.store.baselines import Baseline, json_lines, read_baseline, write_baseline
from pricer.store.fingerprint import FieldChange, Fingerprint
from pricer.store.hardware import class_of_file
from pricer.task.items import Item
from pricer.task.prompts import parse_price


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFile:
    """Predictions read from a file, by item index; a baseline-format file also brings truths and fingerprint."""

    path: Path
    name: str
    predictions: Mapping[int, Prediction]
    truths: Mapping[int, float] | None = None
    fingerprint: Fingerprint | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    """A verdict and how it was reached: which rule, and what the run could not be matched on."""

    verdict: Verdict
    cross_class: bool
    notes: tuple[str, ...] = ()
    accept: str = ""  # the command that makes this run the baseline, when there is one

    @property
    def exit_code(self) -> int:
        """0: not measurably worse; 1: worse, or not comparable."""
        return 0 if self.verdict.passed else 1


def read_run(path: Path) -> RunFile:
    """A baseline-format file (read strictly, checksum included) or JSON Lines of
    {"index": 1, "guess": 12.99, "completion": "12.99", "parsed": true} rows (completion and parsed optional)."""
    path = Path(path)
    text = read_text(path, error=DataError)
    if _is_baseline(text):
        baseline = read_baseline(path)
        return RunFile(path=path, name=baseline.name, fingerprint=baseline.fingerprint,
                       predictions={b.index: Prediction(guess=b.guess, completion=b.completion, parsed=b.parsed)
                                    for b in baseline.items},
                       truths={b.index: b.truth for b in baseline.items})
    predictions: dict[int, Prediction] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        index, prediction = _row(line, where=f"{path}:{number}")
        if index in predictions:
            raise DataError(f"{path}:{number}: field 'index': {index} appears twice")
        predictions[index] = prediction
    if not predictions:
        raise DataError(f"{path}: no predictions (expected JSON Lines of {{\"index\": 1, \"guess\": 12.99}} rows)")
    return RunFile(path=path, name=path.stem, predictions=predictions)


def compare_files(baseline_path: Path, run_path: Path, config: GateConfig, *, cross_class: bool = False) -> Comparison:
    """Gate the run file against the baseline; two baselines of different hardware classes use the cross-class rule."""
    try:
        baseline = read_baseline(baseline_path)
    except BaselineError:
        if json_lines(baseline_path) and _is_baseline(read_text(run_path, error=DataError)):
            raise BaselineError(f"{baseline_path} is JSON Lines of guesses and {run_path} is a baseline: the arguments "
                                f"look swapped; the baseline comes first: pricer compare {run_path} {baseline_path}") \
                from None
        raise
    return compare_run(baseline, read_run(run_path), config, cross_class=cross_class)


def compare_run(baseline: Baseline, run: RunFile, config: GateConfig, *, cross_class: bool = False,
                intervals: bool = True) -> Comparison:
    """The verdict of `pricer compare` on a run already read (`intervals=False`: no CIs, the same verdict)."""
    notes = []
    if run.fingerprint is None:
        notes.append(f"{run.path} has no fingerprint (JSON Lines): only its items are checked against the baseline's")
    elif not cross_class and class_of_file(baseline.path, baseline.fingerprint) != class_of_file(run.path, run.fingerprint):
        cross_class = True
        notes.append(f"hardware classes differ (baseline {class_of_file(baseline.path, baseline.fingerprint)}, run "
                     f"{class_of_file(run.path, run.fingerprint)}): the cross-class rule applies")
    wanted = [b.index for b in baseline.items]
    missing = [i for i in wanted if i not in run.predictions]
    extra = sorted(set(run.predictions) - set(wanted))
    if missing or extra:
        change = FieldChange(field="items", baseline=f"{len(wanted)} items",
                             now=f"{len(run.predictions)} items: {_some(missing)} missing, {_some(extra)} not in the baseline")
        verdict = Verdict(passed=False, name=run.name, reasons=("not comparable with the baseline",),
                          not_comparable=(change,))
        return Comparison(verdict=verdict, cross_class=cross_class, notes=tuple(notes))
    truths = run.truths or {}
    items = [Item(index=b.index, prompt="", price=truths.get(b.index, b.truth), title=b.title) for b in baseline.items]
    result: RunResult = score_run(run.name, items, [run.predictions[i] for i in wanted])
    fingerprint = run.fingerprint or baseline.fingerprint
    classes = (class_of_file(baseline.path, baseline.fingerprint), class_of_file(run.path, fingerprint))
    verdict = compare(baseline, result, fingerprint, config, cross_class=cross_class, classes=classes,
                      intervals=intervals)
    anchor = baseline.anchored()
    if anchor is not None:  # small losses that add up over rewrites: judged against where they started
        drift = compare(anchor, result, fingerprint, config, cross_class=cross_class, classes=classes,
                        intervals=intervals)
        verdict = with_references(verdict, [(anchor_label(baseline.anchor), drift)])
    # A baseline-format run can become the baseline; `pricer accept` keeps the old one in its history with a reason.
    # One at another width or on other items would replace the baseline with a run that is not of it: no advice then.
    accept = (accept_advice(baseline.path, run.path, worse=verdict.worse)
              if run.fingerprint is not None and not verdict.not_comparable else "")
    return Comparison(verdict=verdict, cross_class=cross_class, notes=tuple(notes), accept=accept)


def accept_advice(baseline: Path, run: Path, *, worse: bool = False, reason: str = "why") -> str:
    """The command that makes a baseline-format run the baseline, with a reason (and, for a worse run, the
    trade-off that lets it in)."""
    import shlex

    trade_off = ("--accept-worse", "what it buys") if worse else ()
    return shlex.join(("pricer", "accept", str(baseline), str(run), "--reason", reason, *trade_off))


def accept_run(baseline_path: Path, run_path: Path, *, reason: str, config: GateConfig,
               trade_off: str = "") -> tuple[Baseline, Verdict]:
    """Make a baseline-format run (pytest --pricer-save-runs, pricer eval --save-run) the baseline, as
    --update-baselines does: judged first against the baseline it replaces (a WORSE run only with the trade-off
    named), the replaced one's metrics, reason and verdict kept in its history. Returns the replaced baseline and
    the verdict."""
    previous = read_baseline(baseline_path)
    if not _is_baseline(read_text(run_path, error=DataError)):
        raise DataError(f"{run_path}: JSON Lines of guesses has no fingerprint, so it cannot become a baseline; save "
                        "the run in the baseline format (pytest --pricer-save-runs DIR, pricer eval --save-run PATH)")
    run = read_baseline(run_path)
    judged = compare_run(previous, read_run(run_path), config, intervals=False).verdict
    width = next((c for c in judged.not_comparable if c.field == "bits"), None)
    if width is not None:  # other items may replace a baseline (a new n); another width's run belongs in its own file
        raise BaselineError(f"{previous.path}: not replaced: {run_path} is not comparable with it, a run of another "
                            f"width (bits: baseline {width.baseline!r}, now {width.now!r}); accept it onto that "
                            "width's baseline")
    label = anchor_label(previous.anchor) if previous.anchor else ""
    drift = dict(judged.references).get(label)
    if judged.worse and not trade_off.strip():
        command = accept_advice(previous.path, Path(run_path), worse=True, reason=reason)
        only_drift = drift is not None and all(r.startswith(f"against {label}") for r in judged.reasons)
        than = f"{label}, the best state accepted so far" if only_drift else "it"
        raise BaselineError(f"{previous.path}: not replaced: {run_path} is WORSE than {than}:\n{judged.message()}\n"
                            f"to store it all the same, name the trade-off: {command}")
    kept = trade_off.strip() if judged.worse else ""
    items = [Item(index=b.index, prompt="", price=b.truth, title=b.title) for b in run.items]
    predictions = [Prediction(guess=b.guess, completion=b.completion, parsed=b.parsed) for b in run.items]
    word = "" if judged.not_comparable else verdict_word(judged)
    write_baseline(previous.path, run=score_run(previous.name, items, predictions), fingerprint=run.fingerprint,
                   reason=reason, previous=previous, verdict=word + (f", accepted: {kept}" if kept else ""),
                   trade_off=kept, new_anchor=becomes_anchor(judged, drift))
    return previous, judged


def _is_baseline(text: str) -> bool:
    """A baseline is one JSON object with a format field; JSON Lines has one object per line."""
    stripped = text.lstrip()
    if not stripped.startswith("{"):
        return False
    try:
        obj = json.loads(stripped)
    except json.JSONDecodeError:
        # Pretty-printed yet broken JSON is a damaged baseline (read_baseline names the line); one object per
        # line is JSON Lines.
        first = stripped.splitlines()[0].strip()
        return first == "{"
    return isinstance(obj, dict) and "format" in obj


def _row(line: str, *, where: str) -> tuple[int, Prediction]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected an object like {{\"index\": 1, \"guess\": 12.99}}, found {line.strip()[:40]!r}")
    index = row.get("index")
    if isinstance(index, float) and index.is_integer() and index >= 1:  # 5.0: a whole number, written as a float
        raise DataError(f"{where}: field 'index': {index!r} is a JSON float (it has a decimal point); write the "
                        f"index as a whole number, {int(index)}")
    if not isinstance(index, int) or isinstance(index, bool) or index < 1:
        raise DataError(f"{where}: field 'index': {index!r} is not a positive whole number")
    guess = row.get("guess")
    if (not isinstance(guess, (int, float)) or isinstance(guess, bool) or not math.isfinite(guess) or guess < 0):
        raise DataError(f"{where}: field 'guess': {guess!r} is not a non-negative number")
    completion = row.get("completion")
    if completion is not None and not isinstance(completion, str):
        raise DataError(f"{where}: field 'completion': {completion!r} is not a string")
    parsed = row.get("parsed")
    if parsed is None:
        # Without the flag, the completion decides as the course's parser would; without either, a price was given.
        parsed = completion is None or parse_price(completion) is not None
    elif not isinstance(parsed, bool):
        raise DataError(f"{where}: field 'parsed': {parsed!r} is not true or false")
    return index, Prediction(guess=float(guess), completion=completion, parsed=parsed)


def _some(indices: list[int]) -> str:
    if not indices:
        return "none"
    shown = ", ".join(f"#{i}" for i in indices[:5])
    return f"{len(indices)} ({shown}{', ...' if len(indices) > 5 else ''})"
