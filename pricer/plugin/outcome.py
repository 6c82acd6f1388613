"""Each width's outcome, decided in one place (as pytest-regressions' perform_regression_check): missing, rewritten,
or compared with its baseline; the baseline is read once, and also tells which batching to reproduce and what the
gate can detect before it runs."""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pricer.engines.device import COMPUTE_DTYPE_ENV
from pricer.engines.widths import ORDER
from pricer.errors import BaselineError, OptionError, PricerError
from pricer.gate.references import (anchor_label, becomes_anchor, own_verdict, reference_key, replaced_fields,
                                    replaced_what, verdict_word, with_references)
from pricer.gate.tail import visibility
from pricer.gate.verdict import SMALL_N, Detectable, Verdict, compare, detectable
from pricer.options.parsers import without
from pricer.store.baselines import Baseline, read_baseline, write_baseline
from pricer.store.fingerprint import unrecorded_text

if TYPE_CHECKING:
    from pricer.engines.evaluate import RunResult
    from pricer.engines.predict import DecodingPolicy
    from pricer.plugin.settings import EvalSettings
    from pricer.store.fingerprint import Fingerprint
    from pricer.store.git_refs import CommittedBaseline
    from pricer.store.hardware import BaselineHome

# What a run is measured with, not what decides its baselines: a CI job's reports, workers and the ref it gates
# against; the widths, which the accepting command gives once for every width it rewrites; and what it sets itself.
NOT_DECIDING = ("--pricer-summary", "--pricer-html", "--junitxml", "--junit-xml", "--pricer-save-runs",
                "--pricer-charts", "--pricer-history", "--pricer-against", "--pricer-baseline-class", "--pricer-bits",
                "--pricer-accept-worse", "--pricer-reason", "--numprocesses", "--maxprocesses", "--dist",
                "--benchmark-json", "--benchmark-save")
# The pull-request label a reviewer sets to approve a trade-off this branch already stored, which the example
# workflow (examples/github-actions.yml) reads to gate without --pricer-against.
APPROVAL_LABEL = "pricer-trade-off-approved"
MEANINGLESS_SHARE = 0.25  # a gate that cannot see a 25% worsening protects nothing


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What happened to one width's gate, for the end-of-run summary."""

    width: str
    path: Path
    text: str
    passed: bool
    worse: bool = False  # judged and found worse: only then does accepting it need the trade-off named


@dataclass(frozen=True, slots=True, kw_only=True)
class Detectability:
    """What a width's gate can see before it runs: per measure, and why it is too coarse to trust, if it is."""

    measures: tuple[Detectable, ...]
    too_coarse: str | None = None  # a warning: no continuous measure can see a 25% worsening, or n is small
    note: str | None = None  # printed: one measure is coarse but another sees what it misses
    tail: str = ""  # what the tail rule sees with this baseline, and what it cannot


class SessionRuns(Protocol):
    """What the gates need of an eval session (pricer.plugin.session's EvalSession): where its baselines live, what
    its options decide, and each width's run and fingerprint, made once."""

    home: BaselineHome
    settings: EvalSettings

    def run(self, width: str) -> RunResult: ...

    def fingerprint(self, width: str) -> Fingerprint: ...


class WidthGates:
    """The gate of every width of one session: its outcomes, and the baselines it used (read once each)."""

    def __init__(self, session: SessionRuns) -> None:
        self.session = session
        self.outcomes: list[Outcome] = []
        self.used_baselines: list[Path] = []
        self._stored: dict[tuple, Baseline | BaselineError | None] = {}
        self.references: dict[str, dict[str, Baseline]] = {}  # width -> label -> the other baselines judged against

    def baseline(self, width: str) -> Baseline | None:
        """The width's stored baseline, read once; None when there is none; BaselineError when it is damaged."""
        path = self.session.home.path(width)
        try:
            stat = path.stat()
            key = (path, stat.st_mtime_ns, stat.st_size)  # a file rewritten since is read again
        except OSError:
            key = (path, None, None)
        if key not in self._stored:
            try:
                self._stored[key] = read_baseline(path) if key[1] is not None else None
            except BaselineError as exc:
                self._stored[key] = exc
        found = self._stored[key]
        if isinstance(found, BaselineError):
            raise found
        return found

    def batching(self, width: str) -> DecodingPolicy | None:
        """The batching the width's baseline was made with, to reproduce (batch composition flips greedy decodes);
        None: the options', or the device's default. A damaged baseline gives None here and fails in check()."""
        from pricer.engines.predict import DEFAULT_MAX_NEW_TOKENS, DecodingPolicy

        s = self.session.settings
        if s.batch_size is not None or s.token_budget is not None or s.update:
            return None
        try:
            baseline = self.baseline(width)
        except BaselineError:
            return None
        if baseline is None:
            return None
        return DecodingPolicy.batching_from(baseline.fingerprint.context, max_new_tokens=DEFAULT_MAX_NEW_TOKENS)

    def check(self, width: str) -> Verdict:
        """Compare the width's run with its baseline (and the references the options add: the target branch's
        baseline, the anchor drift is measured from); rewrite the baseline when asked, judged first (and still fail)."""
        home, settings = self.session.home, self.session.settings
        path = home.path(width)
        self.used_baselines.append(path)
        if settings.update and home.asked_class and not home.classic and home.asked_class != home.machine_class:
            # A baseline holds the greedy decodes of the class it was made on: this machine cannot make another's.
            self._fail(width, OptionError(
                f"--update-baselines with --pricer-baseline-class {home.asked_class}: this machine's hardware class "
                f"is {home.machine_class}, and a baseline is written only for the class it is made on; run the update "
                f"on a {home.asked_class} machine, or leave out --pricer-baseline-class to rewrite {path}"))
        try:
            stored = self.baseline(width)
            committed = self._committed(width) if settings.against and not settings.update else None
        except (BaselineError, OptionError) as exc:  # damaged: named, never rewritten over unseen
            self._fail(width, exc)
        if not settings.update and stored is None:  # before the minutes a model takes to run
            try:
                self.session.served(width)  # a server that cannot be used says so first, not "baseline not found"
            except PricerError as exc:
                self._fail(width, exc)
            self._fail(width, BaselineError(self._missing_text(width, path)))
        self.session.run(width)  # made here, once, before the rewrite or the verdicts read it
        if settings.endpoint is not None and stored is not None and not settings.baseline_name:
            from pricer.engines.endpoint.identity import other_engine

            now = self.session.fingerprint(width)
            clash = other_engine(stored.fingerprint.context, {**now.decisive, **now.context})
            if clash:  # two engines never share a baseline by accident, neither judged nor rewritten
                self._fail(width, BaselineError(f"{path}: {clash}"))
        if settings.update:
            try:
                text = self._rewrite(width, path, previous=stored)
            except PricerError as exc:  # refused as worse, or the file could not be written: in the summary too
                self._fail(width, exc)
            self._fail(width, BaselineError(text))
        verdict = self._judge(width, stored)
        others = {}
        if committed is not None and not committed.unchanged:
            others[committed.label] = committed.baseline
        anchor = stored.anchored()
        if anchor is not None:
            others[anchor_label(stored.anchor)] = anchor
        self.references[width] = others
        verdict = with_references(verdict, [(label, self._judge(width, other)) for label, other in others.items()])
        text = verdict.summary_line(width)
        if committed is not None and committed.unchanged:
            text += f"; the baseline is as on {committed.label}"
        other = replaced_what(verdict)
        if verdict.passed and other:
            text += (f"\n  {width}: the baseline describes another {other} ({', '.join(replaced_fields(verdict))} "
                     f"changed): make this run the new baseline with: {self.accept_command(width, reason='why it changed')}")
        if verdict.unrecorded:
            text += f"\n  {width}: {unrecorded_text(verdict.unrecorded)}"
        self.outcomes.append(Outcome(width=width, path=path, text=text, passed=verdict.passed, worse=verdict.worse))
        return verdict

    def settle_text(self, width: str, verdict: Verdict) -> str:
        """What settles a failure only against --pricer-against REF when this branch already stored the change as a
        trade-off: a reviewer's approval, never the accepting command again (it would rewrite the same baseline and
        fail the same way); "" in every other case."""
        stored = self.baseline(width)
        failing = [label for label, v in verdict.references if v.worse]
        if (verdict.passed or stored is None or not stored.trade_off or not own_verdict(verdict).passed or not failing
                or any(reference_key(label) != "against" for label in failing)):
            return ""
        return (f"this branch already stores the change as an accepted trade-off ({stored.trade_off!r} in "
                f"{stored.path.name}), so accepting it again would rewrite the same baseline and fail the same way "
                f"against {failing[0]}: a reviewer settles it, by approving the trade-off on the pull request with the "
                f"label {APPROVAL_LABEL!r}, which the workflow reads to gate against the branch's own baselines "
                "(docs/ci.md, \"Approving a trade-off\")")

    def _judge(self, width: str, baseline: Baseline) -> Verdict:
        """The run of this width against one baseline, with the class rule this session's home decides."""
        home = self.session.home
        return compare(baseline, self.session.run(width), self.session.fingerprint(width), self.session.settings.gate,
                       cross_class=home.cross_class, classes=(home.baseline_class, home.machine_class))

    def _committed(self, width: str) -> CommittedBaseline:
        from pricer.store.git_refs import baseline_at

        return baseline_at(self.session.settings.against, self.session.home.path(width))

    def _fail(self, width: str, error: Exception) -> None:
        self.outcomes.append(Outcome(width=width, path=self.session.home.path(width), text=str(error), passed=False))
        raise error

    def _missing_text(self, width: str, path: Path) -> str:
        home = self.session.home
        pin = self._class_pin()
        accept = self.accept_command(width, reason="first baseline", pin=pin)
        if home.cross_class:  # never the command that would rewrite this machine's own class instead
            text = (f"{path}: baseline not found; a {home.baseline_class} baseline is made on a "
                    f"{home.baseline_class} machine, with:\n  {accept}")
        else:
            text = f"{path}: baseline not found; create it with:\n  {accept}"
        others = [] if home.classic else home.other_classes(width)
        text += self._adapter_hint(width)
        if pin:
            text += (f"\nthis model's other baselines are {home.machine_class.split('-')[0]}-{pin}, not this machine's "
                     f"{home.machine_class}: the command pins {COMPUTE_DTYPE_ENV}={pin} to make it in their class")
        if others:
            text += (f"\nthis machine's hardware class is {home.machine_class}; baselines of {width} exist for "
                     f"{', '.join(others)}: gate against one on purpose with --pricer-baseline-class {others[0]} "
                     "(compared with the cross-class rule)")
        return text

    def _adapter_hint(self, width: str) -> str:
        """For an adapter's first gate: how to judge it against the base model's baselines before it gets its own."""
        import dataclasses

        from pricer.store.baselines import baseline_path

        s, home = self.session.settings, self.session.home
        if s.adapter is None or s.baseline_name or s.predictor:
            return ""
        base = dataclasses.replace(s, adapter=None).model_name
        found = baseline_path(home.folder, base, width, hardware_class=home.baseline_class)
        if not found.is_file():
            return ""
        command = shlex.join(("pytest", *self._deciding_args(), f"--pricer-baseline-name={found.parent.parent.name}"))
        return (f"\nthis adapter's first gate: judge it against the base model's baselines first with: {command} "
                "(docs/your-repo.md, \"Gating an adapter\"); a first baseline of its own skips that judgement")

    def _class_pin(self) -> str | None:
        """The compute dtype to pin for a missing baseline: that of this model's other baselines, when this machine
        is of another class on the same device and nothing is pinned (else the new baseline lands in a class CI,
        which pins its own, never reads); None when nothing needs pinning."""
        from pricer.store.hardware import stored_classes

        home = self.session.home
        if home.classic or home.cross_class or os.environ.get(COMPUTE_DTYPE_ENV):
            return None
        device, _ = home.machine_class.split("-", 1)
        stored = stored_classes(home.path("x").parent.parent)
        if not stored or home.machine_class in stored:
            return None
        same_device = [c.split("-", 1)[1] for c in stored if c.startswith(f"{device}-")]
        return same_device[0] if len(same_device) == 1 else None

    def _rewrite(self, width: str, path: Path, *, previous: Baseline | None) -> str:
        """Judge this run against the baseline it replaces, then write it (a WORSE one only with the trade-off
        named); the text says what moved and how it was judged (a rewrite never gates green)."""
        run, settings = self.session.run(width), self.session.settings
        reason, trade_off = settings.reason or "", (settings.accept_worse or "").strip()
        judged = self._judge(width, previous) if previous is not None else None
        if judged is not None and judged.not_comparable:
            judged = None  # other items or width: nothing to pair with, the message says what differs
        anchor = previous.anchored() if judged is not None else None
        drift = self._judge(width, anchor) if anchor is not None else None
        step_worse = judged is not None and judged.worse
        if drift is not None:  # a rewrite is held to the best state accepted too, not only to the last step
            judged = with_references(judged, [(anchor_label(previous.anchor), drift)])
        if judged is not None and judged.worse and not trade_off:
            accept = self.accept_command(width, reason=reason, trade_off="what it buys")
            than = ("the baseline it would replace" if step_worse
                    else f"{anchor_label(previous.anchor)}, the best state accepted so far")
            raise BaselineError(f"{path}: not rewritten: this run is WORSE than {than}:\n"
                                f"{judged.message()}\nto store it all the same, name the trade-off: {accept}")
        kept = trade_off if judged is not None and judged.worse else ""
        word = verdict_word(judged) if judged is not None else ""
        moved = judged is not None and becomes_anchor(judged, drift)
        write_baseline(path, run=run, fingerprint=self.session.fingerprint(width), reason=reason,
                       previous=previous, verdict=word + (f", accepted: {kept}" if kept else ""), trade_off=kept,
                       new_anchor=moved)
        change = ""
        if previous is not None:
            delta = round(run.metrics.error - previous.metrics["error"], 2) + 0.0  # never "-0.00"
            change = f" (Error ${previous.metrics['error']:,.2f} -> ${run.metrics.error:,.2f}, {delta:+,.2f})"
            if len(run.items) < len(previous.items):  # e.g. a --pricer-n 4 trial rewriting the committed 250
                change += (f"; WARNING: {len(run.items)} items replace {len(previous.items)}, so later gates "
                           f"see only {len(run.items)}: restore it from git unless that is meant")
        text = f"{path}: baseline rewritten{change}, reason: {reason}; a rewrite never gates green, re-run to gate"
        if judged is not None:
            text += (f"\njudged against the baseline it replaces: {word}"
                     + (f"; stored as a trade-off: {kept} (drift is measured from this run on)" if kept
                        else "; better than the best state accepted so far: drift is measured from this run on"
                        if moved else "")
                     + f"\n{judged.message()}")
        elif settings.accept_worse:
            text += "\n--pricer-accept-worse was not needed: there was no comparable baseline to be worse than"
        return text

    def detectability(self, width: str) -> Detectability | None:
        """Per measure, the smallest worsening the gate sees at 80% power, and why it is too coarse, if it is;
        None when there is no baseline to gate against (check() says so)."""
        baseline = self.baseline(width)
        if baseline is None:
            return None
        settings, home = self.session.settings, self.session.home
        found = detectable(baseline, settings.gate)
        rule = (settings.gate.across_classes() if home.cross_class else settings.gate).tail
        tail = visibility(rule, guesses=[b.guess for b in baseline.items], truths=[b.truth for b in baseline.items])
        if len(baseline.items) < SMALL_N:
            return Detectability(measures=found, tail=tail, too_coarse="too coarse to protect anything; raise --pricer-n")
        continuous = [d for d in found if d.share is not None]
        coarse = [d for d in continuous if d.share > MEANINGLESS_SHARE]
        if not coarse:
            return Detectability(measures=found, tail=tail)
        shares = ", ".join(f"{d.measure} {d.share:.0%}" for d in coarse)
        if len(coarse) < len(continuous):  # another measure sees what this one cannot: worth a line, not a warning
            seeing = ", ".join(d.measure for d in continuous if d not in coarse)
            return Detectability(measures=found, tail=tail, note=f"{shares} of its level: coarse alone; {seeing} is finer")
        return Detectability(measures=found, tail=tail, too_coarse=f"neither Error nor log error can see a "
                                                                   f"{MEANINGLESS_SHARE:.0%} worsening ({shares})")

    def accept_command(self, *widths: str, reason: str = "...", trade_off: str | None = None,
                       pin: str | None = None) -> str:
        """One command that rewrites these widths' baselines with the options that decided this run: none of a CI
        job's reports or workers, bits given once, and the compute dtype that decided the hardware class."""
        s = self.session.settings
        # A served width is named by its URL (4bit=URL), already among the arguments.
        bits = () if s.predictor or s.endpoint else (
            f"--pricer-bits={','.join(w.removesuffix('bit') for w in _ordered(widths))}",)
        kept = self._deciding_args()
        pinned = pin or os.environ.get(COMPUTE_DTYPE_ENV)
        env = () if s.predictor or not pinned else (f"{COMPUTE_DTYPE_ENV}={pinned}",)
        worse = ("--pricer-accept-worse", trade_off) if trade_off else ()
        return shlex.join((*env, "pytest", *kept, *bits, "--update-baselines", "--pricer-reason", reason, *worse))

    def _deciding_args(self) -> tuple[str, ...]:
        """This run's arguments less a CI job's reports and workers, the widths and what a rewrite sets itself."""
        return without(self.session.settings.rerun_args, options=NOT_DECIDING, switches=("--update-baselines",),
                       short=("-n",))

    def accept_all(self, *, reason: str = "why") -> str | None:
        """One command for every width that failed in this session, when more than one did (each failure names its
        own); None otherwise or when this run rewrote baselines."""
        failed = dict.fromkeys(o.width for o in self.outcomes if not o.passed)
        if self.session.settings.update or len(failed) < 2:
            return None
        # A WORSE width is stored only with the trade-off named; a missing or not comparable one needs none.
        return self.accept_command(*failed, reason=reason, trade_off="what it buys" if self.any_worse else None,
                                   pin=self._class_pin())

    @property
    def any_worse(self) -> bool:
        """Whether a width was judged worse than its baseline (not only missing, damaged or not comparable)."""
        return any(o.worse for o in self.outcomes)

    def adopt(self, *, outcomes: Iterable[Outcome] = (), used: Iterable[Path] = ()) -> None:
        """Outcomes and baselines relayed from another process (an xdist worker)."""
        self.outcomes.extend(outcomes)
        self.used_baselines.extend(used)

    def order(self, widths: Sequence[str]) -> None:
        """Outcomes in the order of `widths` (then bits), as a serial run lists them."""
        rank = {w: i for i, w in enumerate(widths)}
        self.outcomes.sort(key=lambda o: (rank.get(o.width, len(rank)), ORDER.get(o.width, len(ORDER))))


def _ordered(widths: Iterable[str]) -> list[str]:
    """Widths once each, narrowest first, as --pricer-bits lists them."""
    return sorted(dict.fromkeys(widths), key=lambda w: ORDER.get(w, len(ORDER)))
