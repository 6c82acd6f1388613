"""The quantization ladder: each width against the 32-bit run of the same session (or of saved runs, one width per CI
job), paired, with Bonferroni-corrected CIs. Serial runs, xdist's controller and `pricer ladder` all use this code."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pricer.engines.evaluate import RunResult
from pricer.engines.widths import ORDER, REFERENCE
from pricer.files import kind
from pricer.gate.verdict import ALPHA, PairedDelta, paired_delta
from pricer.store.fingerprint import Fingerprint


@dataclass(frozen=True, slots=True, kw_only=True)
class Tax:
    """What a bit width costs in Error against the 32-bit run of the same session."""

    label: str
    error: float
    reference_error: float
    delta: PairedDelta
    bound: float | None  # dollars

    @property
    def exceeded(self) -> bool:
        # Only a tax surely past the bound fails: the whole corrected CI lies above it.
        return self.bound is not None and self.delta.ci[0] > self.bound

    def line(self) -> str:
        d = self.delta
        pct = 100 * d.mean / self.reference_error
        bound = f"; bound ${self.bound:,.2f}" if self.bound is not None else ""
        return (f"{self.label}: Error ${self.error:,.2f} vs 32bit ${self.reference_error:,.2f}: tax {d.mean:+,.2f} "
                f"({pct:+.1f}%), {d.confidence:.1%} CI [{d.ci[0]:+,.2f}, {d.ci[1]:+,.2f}]{bound}")


def quantization_ladder(
    reference: RunResult, runs: Mapping[str, RunResult], *, max_tax_share: float | None, alpha: float = ALPHA
) -> list[Tax]:
    """Each width against 32 bits, paired, with Bonferroni-corrected CIs for the several comparisons."""
    confidence = 1 - alpha / max(len(runs), 1)
    ref = [s.error for s in reference.scores]
    taxes = []
    for label, run in runs.items():
        delta = paired_delta(ref, [s.error for s in run.scores], confidence=confidence)
        bound = None if max_tax_share is None else max_tax_share * reference.metrics.error
        taxes.append(Tax(label=label, error=run.metrics.error, reference_error=reference.metrics.error, delta=delta, bound=bound))
    return taxes


def ladder(runs: Mapping[str, RunResult], *, max_tax_share: float | None, alpha: float) -> list[Tax]:
    """Each width's run against the 32-bit run; empty unless both a 32-bit run and another width are there."""
    if REFERENCE not in runs or len(runs) < 2:
        return []
    others = {w: run for w, run in runs.items() if w != REFERENCE}
    return quantization_ladder(runs[REFERENCE], others, max_tax_share=max_tax_share, alpha=alpha)


def ladder_lines(taxes: Sequence[Tax]) -> tuple[tuple[str, bool], ...]:
    """The ladder as summary lines; a last line names the widths whose tax is past --pricer-max-tax."""
    if not taxes:
        return ()
    lines = [(f"quantization ladder against {REFERENCE}:", False)]
    lines += [(f"  {tax.line()}", tax.exceeded) for tax in taxes]
    exceeded = [tax.label for tax in taxes if tax.exceeded]
    if exceeded:
        lines.append((f"quantization tax past --pricer-max-tax: {', '.join(exceeded)}", True))
    return tuple(lines)


@dataclass(frozen=True, slots=True, kw_only=True)
class SavedRun:
    """A run stored by --pricer-save-runs (or a baseline: the same format), read back for the ladder."""

    path: Path
    width: str
    run: RunResult
    fingerprint: Fingerprint


def read_saved_run(path: Path) -> SavedRun:
    """One stored run, scored again from its guesses; stored items keep index, title and price, not the prompt,
    which scoring does not need (the fingerprint's prompts_sha256 stands for them)."""
    from pricer.engines.evaluate import score_run
    from pricer.engines.predict import Prediction
    from pricer.store.baselines import read_baseline
    from pricer.task.items import Item

    stored = read_baseline(path)
    items = [Item(index=b.index, prompt="", price=b.truth, title=b.title) for b in stored.items]
    predictions = [Prediction(guess=b.guess, completion=b.completion, parsed=b.parsed) for b in stored.items]
    decisive = stored.fingerprint.decisive
    width = f"{decisive['bits']}bit" if decisive.get("bits") is not None else str(decisive.get("predictor"))
    return SavedRun(path=Path(path), width=width, run=score_run(stored.name, items, predictions),
                    fingerprint=stored.fingerprint)


def _refuse_mixed_classes(runs: Sequence[SavedRun]) -> None:
    """A ladder pairs the widths of one hardware class: across classes it would measure the hardware, not the
    quantization. A run's class is its folder's name (runs/<model>/<class>/4bit.json, as --pricer-save-runs and
    baselines/ store it); where a folder does not say, the device kind its fingerprint records (its compute dtype is
    the width's own at 8 and 32 bits, not the class's)."""
    from pricer.errors import BaselineError
    from pricer.store.hardware import CLASS_PATTERN

    def kind(run: SavedRun) -> str | None:
        device = run.fingerprint.context.get("device")
        return None if device is None else ("cuda" if str(device).startswith("cuda") else "cpu")

    for label, class_of in (("hardware class", lambda run: run.path.parent.name
                             if CLASS_PATTERN.match(run.path.parent.name) else None), ("device", kind)):
        known = [(run, class_of(run)) for run in runs if class_of(run) is not None]
        for run, found in known[1:]:
            if found != known[0][1]:
                raise BaselineError(f"{run.path}: a run of {label} {found}, but {known[0][0].path} is of "
                                    f"{known[0][1]}; a ladder compares the widths of one hardware class (greedy "
                                    "decodes differ between classes): pass runs made on one kind of machine")


def read_saved_runs(paths: Sequence[Path]) -> dict[str, SavedRun]:
    """The runs stored under the paths (files, or folders searched for *.json): one per width, all of one model on
    the same items, in width order."""
    from pricer.errors import BaselineError, OptionError

    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(path.rglob("*.json"))
        elif path.is_file():
            files.append(path)
        else:  # missing, or a link that leads nowhere (a loop, a file gone): say which
            raise OptionError(f"{path}: {'no such file or folder' if (what := kind(path)) == 'missing' else what}")
    if not files:
        raise OptionError(f"no stored runs (*.json) under {', '.join(map(str, paths))}; save them with "
                          "`pytest -m eval --pricer-save-runs DIR`")
    runs: dict[str, SavedRun] = {}
    for file in files:
        saved = read_saved_run(file)
        if saved.width in runs:
            raise BaselineError(f"{file}: a second {saved.width} run (the first is {runs[saved.width].path}); "
                                "pass one run per width")
        runs[saved.width] = saved
    first, *rest = runs.values()
    for other in rest:
        a, b = first.fingerprint.decisive, other.fingerprint.decisive
        for name in sorted((set(a) | set(b)) - {"bits", "quantization"}):  # the two differ between widths by design
            if a.get(name) != b.get(name):
                raise BaselineError(f"{other.path}: not a run of the model and items of {first.path}: {name} is "
                                    f"{b.get(name)!r}, not {a.get(name)!r}")
    _refuse_mixed_classes(list(runs.values()))
    return dict(sorted(runs.items(), key=lambda kv: (ORDER.get(kv[0], len(ORDER)), kv[0])))
