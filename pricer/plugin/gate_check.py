"""What an eval test calls (`pricer_gate.check()`): the width's verdict printed, or failing the test, with the
detectability note before it and the chart, Markdown block and JUnit properties it leaves."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from pricer.options.table import DEFAULT_CHARTS


class Gate:
    """What an eval test calls: `pricer_gate.check()` fails the test with the verdict's message."""

    def __init__(self, session, width: str, *, verdicts: dict[str, bool] | None = None,
                 summaries: dict[str, str] | None = None, properties: list[tuple[str, object]] | None = None,
                 charts: Path | None = None, views: dict[str, dict] | None = None) -> None:
        self.session, self.width = session, width
        self.verdicts = {} if verdicts is None else verdicts  # width -> passed, for --pricer-history
        self.summaries = {} if summaries is None else summaries  # width -> Markdown block, for --pricer-summary
        self.properties = [] if properties is None else properties  # the test's user_properties, for --junitxml
        self.charts = charts  # --pricer-charts: every width's chart goes there; None: failing widths' only
        self.views = views  # width -> its HTML report view (--pricer-html); None: no report is written

    def check(self) -> None:
        __tracebackhide__ = True
        from pricer.errors import PricerError
        from pricer.plugin import summary

        try:
            self._note_detectability()
            verdict = self.session.gates.check(self.width)
            hardware = self.session.home.machine_class
        except PricerError as exc:
            problem = str(exc)
            self.properties.extend(summary.problem_properties(width=self.width, text=problem,
                                                              hardware=self.session.home.machine_class))
            if self.views is not None:
                from pricer.plugin import html_report

                self.views[self.width] = html_report.problem(self.session, self.width, problem)
        else:
            self.verdicts[self.width] = verdict.passed
            path = self.session.home.path(self.width)
            # A WORSE run is stored only with the trade-off named (--pricer-accept-worse): the command asks for it;
            # one this branch already stored is settled by a reviewer, never by the same command again.
            settle = self.session.gates.settle_text(self.width, verdict)
            accept = "" if verdict.passed or settle else self.session.gates.accept_command(
                self.width, reason="why", trade_off="what it buys" if verdict.worse else None)
            chart, chart_line = self._chart(verdict)
            charts, charts_text = self._reference_charts(verdict)
            shown = {"baseline": self._shown(path), "hardware": hardware,
                     "chart": self._shown(chart) if chart else None, "charts": charts}
            self.properties.extend(summary.junit_properties(verdict, width=self.width, **shown))
            stored = self.session.gates.baseline(self.width)
            notes = [f"the baseline was stored as an accepted trade-off: {stored.trade_off}"] if stored.trade_off else []
            self.summaries[self.width] = "\n".join(summary.verdict_block(verdict, title=self.width, accept=accept,
                                                                         settle=settle, notes=notes, **shown))
            if self.views is not None:
                from pricer.plugin import html_report

                self.views[self.width] = html_report.judged(self.session, self.width, verdict, accept=accept)
            if verdict.passed:
                print(verdict.message() + chart_line + charts_text)
                return
            problem = f"{path}: {verdict.message(accept=accept)}{chart_line}{charts_text}" + (f"\n{settle}" if settle else "")
        pytest.fail(problem, pytrace=False)

    def _chart(self, verdict) -> tuple[Path | None, str]:
        """The chart of what moved, for a failing width or with --pricer-charts: its path and the message's line."""
        from pricer.gate.references import own_verdict

        own = own_verdict(verdict)
        if not own.judgements or (own.passed and self.charts is None):
            return None, ""  # no judgements: not comparable, so no items to pair
        return self._draw(own, self.session.gates.baseline(self.width), suffix="moved", what="what moved")

    def _reference_charts(self, verdict) -> tuple[dict[str, Path], str]:
        """A chart for each other comparison that failed (against --pricer-against REF, the anchor), by label."""
        from pricer.gate.references import reference_key

        charts, text = {}, ""
        for label, reference in verdict.references:
            if reference.passed or not reference.judgements:
                continue
            baseline = self.session.gates.references.get(self.width, {}).get(label)
            if baseline is None:
                continue
            path, line = self._draw(reference, baseline, suffix=f"moved-{reference_key(label)}",
                                    what=f"what moved against {label}")
            text += line
            if path is not None:
                charts[label] = self._shown(path)
        return charts, text

    def _draw(self, verdict, baseline, *, suffix: str, what: str) -> tuple[Path | None, str]:
        """Draw the run against one baseline's items: the chart's path and the message's line."""
        from pricer.errors import PricerError
        from pricer.files import ignored_folder
        from pricer.report.charts import moved_chart

        root = self.session.root
        stored = self.session.home.path(self.width)
        try:  # named as the baseline is under the baselines folder: <model>/<class>/4bit-moved.png
            name = stored.relative_to(self.session.home.folder)
        except ValueError:
            name = Path(stored.name)
        name = name.with_name(f"{name.stem}-{suffix}.png")
        try:
            folder = self.charts or ignored_folder(root / Path(DEFAULT_CHARTS).parent) / Path(DEFAULT_CHARTS).name
            path = folder / name
            moved_chart(path, items=baseline.items, guesses=[p.guess for p in self.session.run(self.width).predictions],
                        labelled=[w.index for w in verdict.worst], title=verdict.name)
        except (OSError, PricerError) as exc:  # the verdict stands without its picture
            if self.charts is not None:  # asked for: a passing gate must not lose it in silence
                self.session.problems.append(f"--pricer-charts: {self.width}: chart of {what} not drawn ({exc})")
            return None, f"\nchart of {what}: not drawn ({exc})"
        return path, f"\nchart of {what}: {path}"

    def _shown(self, path: Path) -> Path:
        """A path as the summary shows it: relative to the project, where it is inside."""
        try:
            return Path(path).relative_to(self.session.root)
        except ValueError:
            return Path(path)

    def _note_detectability(self) -> None:
        """Before gating: the smallest worsening this n and this baseline can reveal."""
        from pricer.errors import BaselineError

        if self.session.settings.update:
            return
        try:
            found = self.session.gates.detectability(self.width)
        except BaselineError:
            return  # check() reports it and records it for the summary
        if found is None:
            return  # no baseline: check() says how to make one
        note = (f"{self.width}: this gate detects at 80% power a worsening of "
                + ", ".join(f"{d.measure} {d.text}" for d in found.measures))
        print(note)
        print(f"{self.width}: {found.tail}")
        if found.note:
            print(f"{self.width}: {found.note}")
        if found.too_coarse:
            warnings.warn(f"{note}: {found.too_coarse}", UserWarning, stacklevel=3)
