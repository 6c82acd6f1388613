"""The verdict outside the terminal: a Markdown block per width (appended to a file such as $GITHUB_STEP_SUMMARY)
and JUnit properties per eval test, both from the same Verdict the failure message prints."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pricer.gate.measures import Judgement
    from pricer.gate.verdict import Verdict
    from pricer.plugin.outcome import Outcome

PROPERTY_PREFIX = "pricer."
TAIL_SHOWN = 10  # absurd answers listed before the rest fold away: a broken run can have hundreds
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|$~])")  # `$` too: GitHub reads $...$ as math


# ---------------------------------------------------------------- Markdown


def markdown_text(text: object) -> str:
    """Text shown as itself in Markdown: punctuation Markdown (or GitHub's math) would read is escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, left: int = 1) -> list[str]:
    """A GitHub table: the first `left` columns aligned left, the others (numbers) right."""
    lines = ["| " + " | ".join(markdown_text(h) for h in headers) + " |",
             "|" + "|".join(":---" if i < left else "---:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(markdown_text(cell) for cell in row) + " |" for row in rows]
    return lines


def verdict_block(verdict: Verdict, *, title: str, baseline: Path | str, hardware: str | None = None,
                  accept: str = "", chart: Path | str | None = None, notes: Sequence[str] = (),
                  charts: Mapping[str, Path | str] = (), settle: str = "") -> list[str]:
    """One width's verdict: passed/FAILED and why, the measures, the tail, the items that moved most, the chart
    and the command that accepts the change. Judged against several references (--pricer-against, the anchor),
    each comparison gets its section, with its chart (`charts`, by label) where it failed."""
    status = "passed" if verdict.passed else "FAILED"
    where = f"Baseline `{baseline}`" + (f", hardware class {markdown_text(hardware)}" if hardware else "")
    run = f"; run {markdown_text(verdict.name)}" if verdict.name != title else ""
    lines = [f"### {markdown_text(title)}: {status}", "", f"{where}{run}.", ""]
    if not verdict.references:
        lines += _comparison(verdict, notes=notes, chart=chart)
    else:
        from pricer.gate.references import own_verdict

        own = own_verdict(verdict)
        comparisons = [(f"the baseline `{baseline}`", own), *((markdown_text(f"against {label}"), v)
                                                               for label, v in verdict.references)]
        lines += ["Comparisons made:", ""]
        lines += [f"- {name}: {markdown_text(v.status())}" for name, v in comparisons]
        lines += ["", f"#### Against the baseline: {'passed' if own.passed else 'FAILED'}", ""]
        lines += _comparison(own, notes=notes, chart=chart, heading="#####")
        for label, reference in verdict.references:
            lines += ["", f"#### Against {markdown_text(label)}: {'passed' if reference.passed else 'FAILED'}", ""]
            lines += _comparison(reference, chart=dict(charts).get(label), heading="#####")
    if settle:
        lines += ["", markdown_text(settle)]
    elif not verdict.passed and accept:
        lines += ["", "If this change is intended, accept it with:", "", "```sh", accept, "```"]
    return lines


def _comparison(verdict: Verdict, *, notes: Sequence[str] = (), chart: Path | str | None = None,
                heading: str = "####") -> list[str]:
    """One comparison's body: why it passed or failed, what changed, the measures, the tail, the items, the chart."""
    from pricer.gate.measures import ROW_HEADERS
    from pricer.store.fingerprint import unrecorded_text

    lines = [f"- {markdown_text(reason)}" for reason in verdict.reasons] or [markdown_text(_passed_text(verdict))]
    lines += [f"- {markdown_text(note)}" for note in notes]
    if verdict.cross_class:
        lines.append(f"- across hardware classes ({markdown_text(verdict.cross_class)}): the cross-class rule applies")
    if verdict.not_comparable:
        lines += ["", "Not comparable: the baseline prices other items, or at another width:", ""]
        lines += [f"- `{c.field}`: baseline {_code(c.baseline)}, now {_code(c.now)}" for c in verdict.not_comparable]
    if verdict.changes:
        lines += ["", "<details><summary>What changed since the baseline</summary>", ""]
        lines += [f"- `{c.field}`: baseline {_code(c.baseline)}, now {_code(c.now)}" for c in verdict.changes]
        lines += ["", "</details>"]
    if getattr(verdict, "unrecorded", ()):
        lines += ["", markdown_text(unrecorded_text(verdict.unrecorded))]
    tail = getattr(verdict, "tail", None)  # the tail rule, where the gate has one
    if verdict.rows:
        lines += ["", *markdown_table(ROW_HEADERS, [*verdict.rows, *tail_rows(tail)])]
    if verdict.judgements:
        j = verdict.judgements[0]
        lines += ["", f"Each measure fails when Holm p < {j.alpha} (corrected for {len(verdict.judgements)} measures) "
                      "and its change is beyond its tolerance."]
    lines += tail_lines(tail)
    if verdict.worst:
        lines += ["", f"{heading} Items whose {markdown_text(verdict.worst[0].measure)} got worse most", ""]
        lines += markdown_table(("item", "title", "truth", "baseline guess", "now", "change"), [
            (f"#{w.index}", w.title, f"${w.truth:,.2f}", f"${w.before:,.2f}", f"${w.now:,.2f}", w.amount)
            for w in verdict.worst], left=2)
    if chart is not None:
        lines += ["", f"Chart of what moved: `{chart}`"]
    return lines


def _passed_text(verdict: Verdict) -> str:
    """A passing comparison's sentence: better on which measures, or not measurably worse."""
    better = getattr(verdict, "better", ())
    return f"Better: {', '.join(better)}." if better else "Not measurably worse."


def problem_block(*, title: str, text: str) -> list[str]:
    """A width that ended without a verdict (no baseline, a damaged one, a rewrite): its message as printed."""
    return [f"### {markdown_text(title)}: FAILED", "", "```text", *text.splitlines(), "```"]


def tail_rows(tail: Any) -> list[tuple[str, ...]]:
    """The tail rule's line under the measures table, where the verdict has one (read by duck typing)."""
    row = getattr(tail, "row", None)
    return [tuple(row())] if callable(row) else []


def tail_lines(tail: Any) -> list[str]:
    """The tail rule's absurd answers, where the verdict has them: truth, baseline guess, now."""
    items = getattr(tail, "items", None) or ()
    if not items:
        return []
    budget = getattr(getattr(tail, "rule", None), "budget", None)
    lines = ["", f"#### Absurd answers (tail budget {'off' if budget is None else budget})", ""]
    listed = [f"- {_item_text(item)}" for item in items]
    if len(listed) <= TAIL_SHOWN:
        return lines + listed
    return lines + [*listed[:TAIL_SHOWN], "", f"<details><summary>{len(listed) - TAIL_SHOWN} more</summary>", "",
                    *listed[TAIL_SHOWN:], "", "</details>"]


def ladder_section(ladder: Sequence[tuple[str, bool]]) -> list[str]:
    """The quantization ladder's summary lines (pricer.gate.ladder.ladder_lines) as a heading and a list."""
    if not ladder:
        return []
    (heading, _), *rest = ladder
    lines = [f"### {markdown_text(heading.rstrip(':'))}", ""]
    for line, failed in rest:
        if line.startswith("  "):
            lines.append(f"- {markdown_text(line.strip())}" + (" **past --pricer-max-tax**" if failed else ""))
        else:
            lines += ["", f"**{markdown_text(line)}**"]
    return lines


def document(blocks: Sequence[Sequence[str]], *, heading: str, ladder: Sequence[tuple[str, bool]] = (),
             html: Path | str | None = None) -> str:
    """A session's Markdown: a heading, where the HTML report of every item is, each width's block, then the ladder."""
    lines = [f"## {heading}", ""]
    if html:
        lines += [f"Every item, both answers, the charts and the history: the HTML report `{html}`.", ""]
    for block in blocks:
        lines += [*block, ""]
    if ladder:
        lines += [*ladder_section(ladder), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def session_document(*, model: str, widths: Sequence[str], outcomes: Sequence[Outcome], blocks: Mapping[str, str],
                     ladder: Sequence[tuple[str, bool]] = (), html: Path | str | None = None) -> str:
    """The gate's document: per width in width order, its verdict block, else the message it ended with."""
    last = {o.width: o for o in outcomes}  # a width gated twice: its last outcome, as its block is
    shown = [w for w in widths if w in last] + [w for w in last if w not in widths]
    failed = [w for w in shown if not last[w].passed]
    status = f"FAILED ({', '.join(failed)})" if failed else "passed"
    parts = [blocks[w].splitlines() if w in blocks else problem_block(title=w, text=last[w].text) for w in shown]
    return document(parts, heading=f"pricer gate: {markdown_text(model)}: {status}", ladder=ladder, html=html)


def append_document(path: Path, text: str) -> None:
    """Append a document to a Markdown file in one write, a blank line after what the file held (a stream, such as
    /dev/stdout, is never read back). OutputError names a file that is not ours or cannot be written."""
    from pricer.files import append_text, tail_bytes

    end = tail_bytes(path, 2)
    gap = "" if not end or end.endswith(b"\n\n") else ("\n" if end.endswith(b"\n") else "\n\n")
    append_text(path, gap + text)


# ---------------------------------------------------------------- JUnit properties


def junit_properties(verdict: Verdict, *, width: str, baseline: Path | str, hardware: str | None = None,
                     chart: Path | str | None = None, charts: Mapping[str, Path | str] = ()) -> list[tuple[str, str]]:
    """`pricer.verdict`, `pricer.hardware_class`... and per measure `pricer.<measure>.<column>`, every column of the
    measures table as it shows them (`pricer.error.baseline`, `pricer.log_error.holm_p`, `pricer.tail.verdict`), for
    the comparison with the baseline; each other comparison made the same under its own prefix
    (`pricer.against.verdict`, `pricer.anchor.error.verdict`), and `pricer.verdict` for them all."""
    from pricer.gate.references import own_verdict, reference_key

    own = own_verdict(verdict)
    found = [("width", width), ("verdict", "passed" if verdict.passed else "FAILED"),
             ("hardware_class", hardware or "none"), ("baseline", str(baseline))]
    found.append(("reason", "; ".join(verdict.reasons) or "not measurably worse"))  # as the message's first line
    found.append(("comparisons", ",".join(["baseline", *(reference_key(label) for label, _ in verdict.references)])))
    found += _comparison_properties(own, chart=chart, prefix="")
    found += [("passed.value", int(verdict.passed)), ("baseline_verdict", _word(own))]
    for label, reference in verdict.references:
        key = reference_key(label)
        found += [(f"{key}.label", label), (f"{key}.verdict", _word(reference)),
                  (f"{key}.reason", "; ".join(reference.reasons) or "not measurably worse")]
        found += _comparison_properties(reference, chart=dict(charts).get(label), prefix=f"{key}.")
        found.append((f"{key}.passed.value", int(reference.passed)))
    return [(PROPERTY_PREFIX + name, str(value)) for name, value in found]


def _word(verdict: Verdict) -> str:
    return "passed" if verdict.passed else "FAILED"


def _comparison_properties(verdict: Verdict, *, chart: Path | str | None, prefix: str) -> list[tuple[str, object]]:
    """One comparison's table as properties: `<prefix><measure>.<column>` and their numbers, under names that never
    hold a dollar amount (`large_moves`, not `large_moves_82`)."""
    from pricer.gate.measures import ROW_HEADERS

    found: list[tuple[str, object]] = []
    if verdict.cross_class:
        found.append((f"{prefix}cross_class", verdict.cross_class))
    named = [(property_slug(row[0].split(" (")[0]), row) for row in verdict.rows]
    named += [("tail", row) for row in tail_rows(getattr(verdict, "tail", None))]
    for slug, row in named:
        found += [(f"{prefix}{slug}.{property_slug(header)}", cell) for header, cell in zip(ROW_HEADERS[1:], row[1:])]
    if chart is not None:
        found.append((f"{prefix}chart", str(chart)))
    found += [(prefix + name, value) for name, value in _numbers(verdict.judgements)]
    return found


def _numbers(judgements: Sequence[Judgement]) -> list[tuple[str, str]]:
    """Beside each readable cell, its number (`pricer.error.baseline.value` = 182.24), so that a dashboard charts
    them unparsed: dollars for Error, a share of items (0.52) for Hits and unparsed, changes in the measure's own
    direction (a drop of Hits is negative)."""
    found = []
    for j in judgements:
        m = j.measure
        sign = 1.0 if m.higher_is_worse else -1.0
        values = {"baseline": _mean(m.before), "now": _mean(m.now), "change_tested": sign * j.worsening,
                  "change_mean": sign * j.mean_change, "p": j.p_worse, "holm_p": j.p_holm,
                  "tolerance": m.tolerance, "detectable": j.detectable}
        found += [(f"{property_slug(m.name)}.{column}.value", f"{value:.6g}")
                  for column, value in values.items() if math.isfinite(value)]
    return found


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if values else math.nan


def problem_properties(*, width: str, text: str, hardware: str | None = None) -> list[tuple[str, str]]:
    """A width that ended without a verdict: FAILED and the message's first line."""
    first = text.splitlines()[0] if text else ""
    return [(PROPERTY_PREFIX + name, value) for name, value in (
        ("width", width), ("verdict", "FAILED"), ("hardware_class", hardware or "none"), ("reason", first))]


def property_slug(name: str) -> str:
    """"log error" -> "log_error", "95% CI" -> "ci_95": a measure's or a column's name as part of a property name."""
    name = re.sub(r"^(\d+)%\s*(.*)$", r"\2 \1", name)
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


# ---------------------------------------------------------------- helpers


def _code(value: object) -> str:
    text = repr(value).replace("`", "'")
    return f"`{text}`"


def _item_text(item: Any) -> str:
    """An item of the tail rule: as the worst-items list prints one, when it has those fields."""
    fields = ("index", "title", "truth", "before", "now")
    if all(hasattr(item, name) for name in fields):
        amount = getattr(item, "amount", "") or ""
        return (f"#{item.index} {markdown_text(item.title)}: truth \\${item.truth:,.2f}, baseline guess "
                f"\\${item.before:,.2f}, now \\${item.now:,.2f}" + (f" ({markdown_text(amount)})" if amount else ""))
    return markdown_text(item)
