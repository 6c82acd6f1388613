"""One self-contained HTML file of a gate (pricer.report.html_view's Page): per width and comparison the verdict as
the terminal prints it, what changed in the fingerprint, the charts and every item; the histories. plotly.js is
inlined, so the page opens offline (a CI artifact, an air-gapped lab) and fetches nothing."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

from pricer.errors import OutputError
from pricer.report.html_assets import CSS, SCRIPT
from pricer.report.html_charts import history_figure, moved_figure, truth_figure
from pricer.report.html_view import ComparisonView, Page, WidthView

# Every report begins with these bytes: a file that does not is another program's, and is never replaced.
MARKER = "<!DOCTYPE html>\n<!-- pricer report:"
_CLOSING = re.compile(r"</(script)", re.IGNORECASE)


def replace_problem(path: Path) -> str | None:
    """Why the report must not be written over `path`, else None: only a new or empty file, or a report pricer
    wrote, is replaced; another program's file (an index.html, a .md) never is."""
    from pricer.files import existing_head, output_problem

    problem = output_problem(path)
    if problem:
        return problem
    if existing_head(path, len(MARKER)) in (None, MARKER.encode()):
        return None
    return "an existing file pricer did not write (it does not begin as a pricer report); name a new .html file"


def write_page(path: Path, page: Page) -> int:
    """Write the report atomically (OutputError naming the file when it is not ours to replace); its size in bytes."""
    problem = replace_problem(Path(path))
    if problem:
        raise OutputError(f"{path}: {problem}")
    from pricer.files import atomic_write_text

    text = render(page)
    atomic_write_text(Path(path), text)
    return len(text.encode("utf-8"))


def render(page: Page) -> str:
    """The whole page: the style, plotly.js, the sections, the data and the page's own script."""
    try:
        from plotly.offline import get_plotlyjs  # heavy: only when a report is written
    except ImportError:
        raise OutputError("the HTML report inlines plotly.js from the plotly package, which is not installed: "
                          "pip install plotly") from None

    data: dict[str, Any] = {"items": {}, "tables": {}, "figures": {}}
    status = "passed" if page.passed else "FAILED"
    parts = [f"{MARKER} written by pricer; it replaces only files that begin with this line -->",
             "<html lang=\"en\"><head><meta charset=\"utf-8\">",
             "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
             f"<title>{_e(page.title)}: {status}</title><style>{CSS}</style>",
             f"<script>{_script_safe(get_plotlyjs())}</script></head><body>",
             f"<header><h1>{_e(page.title)}: <span class=\"{status.lower()}\">{status}</span></h1>"]
    parts += [f"<p>{_e(line)}</p>" for line in page.lines]
    links = [f"<a href=\"#{_id('w', w.width)}\">{_e(w.width)}: {'passed' if w.passed else 'FAILED'}</a>"
             for w in page.widths]
    parts.append(f"<nav>{''.join(links)}<a href=\"#history\">history</a></nav></header><main>")
    for number, width in enumerate(page.widths):
        parts += _width_section(width, number, data)
    parts += _history_section(page, data)
    parts.append("</main>")
    parts.append(f"<script type=\"application/json\" id=\"pricer-data\">{_script_safe(json.dumps(data))}</script>")
    parts.append(f"<script>{SCRIPT}</script></body></html>\n")
    return "\n".join(parts)


def _width_section(width: WidthView, number: int, data: dict[str, Any]) -> list[str]:
    status = "passed" if width.passed else "FAILED"
    parts = [f"<section class=\"width\" id=\"{_id('w', width.width)}\" data-width=\"{_e(width.width)}\">",
             f"<h2>{_e(width.width)}: <span class=\"{status.lower()}\">{status}</span></h2>"]
    if width.name != width.width:
        parts.append(f"<p>run {_e(width.name)}, {len(width.items)} items</p>")
    if width.problem:
        parts.append(f"<pre class=\"problem\">{_e(width.problem)}</pre>")
    items_key = f"w{number}"
    data["items"][items_key] = [{"index": i.index, "title": i.title, "truth": i.truth, "prompt": i.prompt,
                                 "now": [i.now.guess, i.now.completion, i.now.parsed]} for i in width.items]
    if not width.comparisons and width.items:  # a run with no verdict: its items alone
        table = f"t{number}"
        data["tables"][table] = {"items": items_key, "label": "", "before": None, "measures": [], "absurd": []}
        data["figures"][f"{table}-truth"] = truth_figure(width.items, None, table=table)
        parts += ["<h3>Items of the run (no comparison was made)</h3>",
                  f"<div class=\"charts\"><div class=\"chart\" data-figure=\"{table}-truth\"></div></div>",
                  f"<div class=\"items\" data-table=\"{table}\" data-comparison=\"\"></div>"]
    for k, comparison in enumerate(width.comparisons):
        parts += _comparison_block(width, comparison, table=f"t{number}-{k}", items_key=items_key, data=data,
                                   open_=k == 0 or not comparison.passed)
    parts.append("</section>")
    return parts


def _comparison_block(width: WidthView, c: ComparisonView, *, table: str, items_key: str, data: dict[str, Any],
                      open_: bool) -> list[str]:
    against = "baseline" if c.label == "baseline" else c.label
    parts = [f"<details class=\"comparison\" data-comparison=\"{_e(c.label)}\"{' open' if open_ else ''}>",
             f"<summary>against {_e(against)}: <span class=\"{'passed' if c.passed else 'failed'}\">"
             f"{_e(c.status)}</span></summary>", f"<p>compared with <code>{_e(c.reference)}</code>"
             + (f"; across hardware classes ({_e(c.cross_class)}): the cross-class rule applies" if c.cross_class
                else "") + "</p>",
             f"<pre class=\"verdict wrap\">{_e(c.text)}</pre>"]
    for heading, rows in (("Not comparable", c.not_comparable), ("What changed in the fingerprint", c.changes)):
        if rows:
            cells = "".join(f"<tr><td><code>{_e(f)}</code></td><td>{_e(b)}</td><td>{_e(n)}</td></tr>"
                            for f, b, n in rows)
            parts.append(f"<h4>{heading}</h4><table class=\"changes\"><tr><th>field</th><th>{_e(against)}</th>"
                         f"<th>now</th></tr>{cells}</table>")
    if not c.changes and not c.not_comparable:
        parts.append("<p>The fingerprint is the same as the reference's.</p>")
    if c.before:
        data["tables"][table] = {"items": items_key, "label": against, "measures": [
            {"name": m.name, "unit": m.unit, "higher_is_worse": m.higher_is_worse,
             "worse": [w if w == w else None for w in m.worse]} for m in c.measures],
            "before": [[b.guess, b.completion, b.parsed] for b in c.before], "absurd": list(c.absurd),
            "worst": list(c.worst)}
        data["figures"][f"{table}-truth"] = truth_figure(width.items, c, table=table)
        data["figures"][f"{table}-moved"] = moved_figure(width.items, c, table=table)
        parts += [f"<div class=\"charts\"><div class=\"chart\" data-figure=\"{table}-truth\"></div>"
                  f"<div class=\"chart\" data-figure=\"{table}-moved\"></div></div>",
                  "<p>Click a point or a row to read the item's prompt and both completions.</p>",
                  f"<div class=\"items\" data-table=\"{table}\"></div>"]
    parts.append("</details>")
    return parts


def _history_section(page: Page, data: dict[str, Any]) -> list[str]:
    parts = ["<section id=\"history\"><h2>History</h2>"]
    widths = list(dict.fromkeys([line.width for line in page.history] + [m.width for m in page.marks]))
    if not page.history:
        parts.append(f"<p>{_e(page.history_note or 'No history recorded.')}</p>")
    for width in widths:
        lines = [line for line in page.history if line.width == width]
        marks = [m for m in page.marks if m.width == width]
        key = _id("h", width)
        if lines:
            data["figures"][key] = history_figure(width, lines, marks)
            parts.append(f"<div class=\"chart\" data-figure=\"{key}\"></div>")
        else:
            parts.append(f"<h3>{_e(width)}</h3>")
        if marks:
            parts.append(f"<ul class=\"marks\" data-width=\"{_e(width)}\">"
                         + "".join(f"<li>{_e(m.date[:10])}: {_e(m.text)}</li>" for m in marks) + "</ul>")
    parts.append("</section>")
    return parts


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _id(prefix: str, name: str) -> str:
    return f"{prefix}-" + re.sub(r"[^A-Za-z0-9_-]+", "-", name)


def _script_safe(text: str) -> str:
    """Text inside a <script> element: a `</script` or `<!--` in it would end or confuse the element (in JSON and in
    JavaScript's strings, where they can only be, `<\\/` and `\\u003C!--` read the same)."""
    return _CLOSING.sub(r"<\\/\1", text).replace("<!--", "\\u003C!--")
