"""The HTML report's own style and script, kept small: plotly.js draws the charts; this script only builds each
item table from the page's data and sorts, filters and opens its rows (the prompt and both completions)."""

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1400px; padding: 0 1.5em 3em; color: #222; }
h1 { margin-bottom: .2em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
.passed { color: #1b7f2a; } .failed { color: #c62828; }
pre { background: #f6f8fa; padding: .7em; overflow-x: auto; white-space: pre; font-size: 12px; }
pre.wrap { white-space: pre-wrap; word-break: break-word; }
details.comparison { border: 1px solid #ddd; border-radius: 6px; padding: .3em 1em; margin: 1em 0; }
details.comparison > summary { font-weight: 600; cursor: pointer; padding: .4em 0; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; } .chart { flex: 1 1 520px; min-width: 420px; }
.controls { display: flex; gap: 1em; align-items: center; margin: .8em 0; flex-wrap: wrap; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
.scroll { max-height: 75vh; overflow: auto; border: 1px solid #eee; }
th, td { border-bottom: 1px solid #eee; padding: 3px 6px; text-align: right; vertical-align: top; }
th { position: sticky; top: 0; background: #fafafa; cursor: pointer; user-select: none; white-space: nowrap; }
th[aria-sort=ascending]::after { content: " \\25B2"; } th[aria-sort=descending]::after { content: " \\25BC"; }
td.title, th.title { text-align: left; } tr.item { cursor: pointer; } tr.item:hover { background: #f3f7ff; }
tr.open { background: #eef4ff; } td.worse { color: #c62828; } td.better { color: #1b7f2a; }
.flag { display: inline-block; font-size: 11px; padding: 0 4px; border-radius: 3px; background: #fde2e1; }
.detail td { text-align: left; background: #fcfcfc; } .detail h4 { margin: .4em 0 .2em; }
table.changes td, table.changes th { text-align: left; cursor: auto; position: static; }
nav a { margin-right: 1em; }
"""

# The page's data (a JSON script element) holds per table: the width's items, and for the comparison the reference's
# answers, per measure each item's change (positive = worse), the absurd items and the worst ones.
SCRIPT = r"""
"use strict";
(() => {
  const D = JSON.parse(document.getElementById("pricer-data").textContent);
  const make = (tag, text, cls) => {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  };
  const money = (v, signed) => (v < 0 ? "-" : signed && v > 0 ? "+" : "") + "$" +
    Math.abs(v).toLocaleString("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 2});
  const guess = a => money(a[0]) + (a[2] ? "" : " (no price)");
  function changeText(m, w) {  // w: the change, positive = worse; shown in the measure's own direction
    if (w === null || w === 0) return "";
    const natural = m.higher_is_worse ? w : -w;
    if (m.unit === "%") return natural > 0 ? "no \u2192 yes" : "yes \u2192 no";
    return m.unit === "$" ? money(natural, true) : (natural > 0 ? "+" : "-") + Math.abs(natural).toFixed(3);
  }
  const tables = {};
  function build(host) {
    const T = D.tables[host.dataset.table], items = D.items[T.items], before = T.before;
    const absurd = new Set(T.absurd), error = T.measures.find(m => m.unit === "$");
    const cols = [{name: "#", key: i => items[i].index}, {name: "title", key: i => items[i].title, cls: "title"},
      {name: "truth", key: i => items[i].truth, text: i => money(items[i].truth)}];
    if (before) cols.push({name: T.label + " guess", key: i => before[i][0], text: i => guess(before[i])});
    cols.push({name: "now guess", key: i => items[i].now[0], text: i => guess(items[i].now)});
    T.measures.forEach(m => cols.push({name: m.name + " change", key: i => m.worse[i] ?? 0, change: true,
      text: i => changeText(m, m.worse[i]), cls: i => (m.worse[i] > 0 ? "worse" : m.worse[i] < 0 ? "better" : "")}));
    const filters = {all: () => true, absurd: i => absurd.has(items[i].index),
      unparsed: i => !items[i].now[2] || (before && !before[i][2]),
      worse: i => error && error.worse[i] > 0.005, better: i => error && error.worse[i] < -0.005};
    const haystack = items.map((it, i) => ["#" + it.index, it.title, it.prompt || "", it.now[1] || "",
      before ? before[i][1] || "" : ""].join("\n").toLowerCase());
    const controls = make("div", null, "controls"), select = make("select"), search = make("input");
    const count = make("span");
    select.setAttribute("aria-label", "show");
    [["all", "all items"], ["worse", "got worse (Error)"], ["better", "got better (Error)"],
     ["absurd", "absurd answers"], ["unparsed", "no price (unparsed)"]].forEach(([value, text]) => {
      if (before || value === "all" || value === "unparsed") {
        const o = make("option", text); o.value = value; select.append(o);
      } });
    search.type = "search"; search.placeholder = "search title, prompt, completions, #index";
    controls.append("Show ", select, search, count);
    const table = make("table"), head = make("tr"), body = make("tbody");
    table.createTHead().append(head); table.append(body);
    const rows = items.map((_, i) => {
      const tr = make("tr", null, "item");
      tr.dataset.index = items[i].index;
      cols.forEach(c => {
        const td = make("td", c.text ? c.text(i) : c.key(i));
        const cls = typeof c.cls === "function" ? c.cls(i) : c.cls;
        if (cls) td.className = cls;
        tr.append(td); });
      const flags = make("td", null, "title");
      if (absurd.has(items[i].index)) flags.append(make("span", "absurd", "flag"));
      if (!items[i].now[2]) flags.append(make("span", "no price now", "flag"));
      if (before && !before[i][2]) flags.append(make("span", "no price before", "flag"));
      tr.append(flags);
      tr.addEventListener("click", () => toggle(i));
      return tr; });
    const details = {};
    function toggle(i, open) {  // the item's prompt and both completions, in a row under it
      if (details[i] && open !== true) {
        details[i].remove(); delete details[i]; rows[i].classList.remove("open"); return; }
      if (details[i]) return;
      const tr = make("tr", null, "detail"), td = make("td");
      td.colSpan = cols.length + 1;
      const part = (h, text) => td.append(make("h4", h),
        make("pre", text ?? "(none: a classic predictor writes no text)", "wrap"));
      part("prompt", items[i].prompt ?? "(not stored: a saved run keeps no prompt; pricer report --data puts it back)");
      if (before) part(T.label + " completion (guess " + guess(before[i]) + ")", before[i][1]);
      part("completion now (guess " + guess(items[i].now) + ")", items[i].now[1]);
      tr.append(td); rows[i].after(tr); rows[i].classList.add("open"); details[i] = tr;
    }
    let order = items.map((_, i) => i);
    function show() {
      const keep = filters[select.value], words = search.value.trim().toLowerCase();
      let shown = 0;
      body.replaceChildren();
      order.forEach(i => {
        if (keep(i) && (!words || haystack[i].includes(words))) {
          body.append(rows[i]); if (details[i]) body.append(details[i]); shown++; } });
      count.textContent = shown + " of " + items.length + " items";
    }
    cols.forEach((c, n) => {
      const th = make("th", c.name, n === 1 ? "title" : "");
      head.append(th);
      th.addEventListener("click", () => {  // a change column sorts worst first; a second click turns it round
        const sorted = th.getAttribute("aria-sort"), down = sorted ? sorted === "ascending" : !!c.change;
        head.querySelectorAll("th").forEach(h => h.removeAttribute("aria-sort"));
        th.setAttribute("aria-sort", down ? "descending" : "ascending");
        const key = items.map((_, i) => c.key(i)), sign = down ? -1 : 1;
        order = items.map((_, i) => i).sort((a, b) => (key[a] < key[b] ? -1 : key[a] > key[b] ? 1 : a - b) * sign);
        show(); }); });
    head.append(make("th", "flags", "title"));
    select.addEventListener("change", show);
    search.addEventListener("input", show);
    const scroll = make("div", null, "scroll");  // a long table scrolls in its own box, its header kept in view
    scroll.append(table);
    host.append(controls, scroll);
    show();
    tables[host.dataset.table] = {reveal(i) {  // a chart's point clicked: its row, open
      select.value = "all"; search.value = ""; show(); toggle(i, true); rows[i].scrollIntoView({block: "center"}); }};
  }
  document.querySelectorAll("[data-table]").forEach(build);
  document.querySelectorAll("[data-figure]").forEach(div => {
    const f = D.figures[div.dataset.figure];
    Plotly.newPlot(div, f.data, f.layout, {displaylogo: false, responsive: true, typesetMath: false}).then(() => {
      if (f.table) div.on("plotly_click", ev => {
        const p = ev.points[0];
        if (p && p.customdata !== undefined && tables[f.table]) tables[f.table].reveal(p.customdata); }); });
  });
})();
"""
