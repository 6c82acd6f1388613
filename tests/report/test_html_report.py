"""The gate's HTML report (--pricer-html, `pricer report`): one self-contained file per gate, opened in a real
browser (Debian's chromium driven by Playwright; skipped with the reason where either is missing).

Runs are synthetic baseline-format files (a planted WORSE run, a run with no baseline, a crossed-class run, a served
run); the gate itself runs the constant predictor. No LLM is loaded.
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pricer.cli.main import main
from pricer.engines.evaluate import score_run
from pricer.engines.predict import Prediction
from pricer.report.html_page import MARKER
from pricer.report.html_view import WidthView
from pricer.store.baselines import write_baseline
from pricer.store.fingerprint import Fingerprint
from pricer.task.items import Item

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-gpu"]
MODEL = "tiny-model"
ABSURD_INDEX = 8  # the planted WORSE run's worst item: its guess is a million dollars
PROMPT_CHARACTERS = 767  # the mean prompt of the real test items, so that sizes measured here are the real ones'


def items(n: int) -> list[Item]:
    rng = random.Random(0)
    return [Item(index=i, price=round(rng.uniform(2, 900), 2), title=f"Item {i} <b>&</b> thing",
                 prompt=f"How much does this cost?\n\nItem {i} " + "x" * (PROMPT_CHARACTERS - 40) + "\n\nPrice is $")
            for i in range(1, n + 1)]


def predictions(rows: list[Item], *, seed: int, worse: bool = False) -> list[Prediction]:
    """Guesses within about 30% of the truth; `worse`: two items in five guessed five times too high, and one a
    million dollars."""
    rng = random.Random(seed)
    found = []
    for position, item in enumerate(rows):
        guess = round(item.price * rng.uniform(0.7, 1.3), 2)
        if worse and position % 5 < 2:
            guess *= 5
        if worse and item.index == ABSURD_INDEX:
            guess = 1_000_000.0
        found.append(Prediction(guess=guess, completion=f"{guess:.2f}", parsed=True))
    return found


def fingerprint(n: int, *, device: str = "cpu", dtype: str = "float32", **decisive) -> Fingerprint:
    return Fingerprint(decisive={"predictor": "llm", "model": MODEL, "bits": 4, "n": n, "items_sha256": "i" * 8,
                                 "prompts_sha256": "p" * 8, "prompt": "text column", **decisive},
                       context={"device": device, "compute_dtype": dtype, "split": "test"})


def store(path: Path, rows: list[Item], guesses: list[Prediction], fp: Fingerprint, *, reason: str = "test") -> Path:
    write_baseline(path, run=score_run(MODEL, rows, guesses), fingerprint=fp, reason=reason, previous=None)
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Baselines and saved runs of 250 items: a WORSE 4bit run, an 8bit one with no baseline, a 16bit run made on
    another hardware class, a served 32bit run whose server changed."""
    root = tmp_path_factory.mktemp("project")
    rows = items(250)
    base, runs = root / "baselines" / MODEL, root / "runs" / MODEL
    store(base / "cpu-float32" / "4bit.json", rows, predictions(rows, seed=1), fingerprint(250))
    store(runs / "cpu-float32" / "4bit.json", rows, predictions(rows, seed=2, worse=True), fingerprint(250))
    store(runs / "cpu-float32" / "8bit.json", rows, predictions(rows, seed=3), fingerprint(250, bits=8))
    store(base / "cpu-float32" / "16bit.json", rows, predictions(rows, seed=1), fingerprint(250, bits=16))
    store(root / "crossed" / MODEL / "cuda-bfloat16" / "16bit.json", rows, predictions(rows, seed=4),
          fingerprint(250, bits=16, device="cuda", dtype="bfloat16"))
    served = dict(engine="endpoint", bits=32, endpoint_url="http://127.0.0.1:8000/v1")
    store(base / "cpu-float32" / "32bit.json", rows, predictions(rows, seed=1), fingerprint(250, **served))
    store(root / "served" / MODEL / "cpu-float32" / "32bit.json", rows, predictions(rows, seed=1),
          fingerprint(250, **served | {"endpoint_url": "http://10.0.0.2:8000/v1"}))
    return root


def report(project: Path, *args: str, out: str = "report.html") -> tuple[int, Path]:
    path = project / out
    code = main(["report", *args, "--baselines", str(project / "baselines"), "--out", str(path)])
    return code, path


def page_data(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    start = text.index('<script type="application/json" id="pricer-data">') + len(
        '<script type="application/json" id="pricer-data">')
    return json.loads(text[start:text.index("</script>", start)])


# ---------------------------------------------------------------- the file


def test_report_of_a_worse_run_fails_and_holds_every_item_offline(project, capsys):
    code, path = report(project, str(project / "runs" / MODEL / "cpu-float32" / "4bit.json"))

    assert code == 1
    assert f"{MODEL}/cpu-float32/4bit: FAILED; against baseline: WORSE" in capsys.readouterr().out
    text = path.read_text(encoding="utf-8")
    assert text.startswith(MARKER)
    # plotly.js inlined, no script fetched: the browser tests check that nothing at all is requested
    assert re.findall(r"<script[^>]*>", text) == ["<script>", '<script type="application/json" id="pricer-data">',
                                                  "<script>"]
    data = page_data(path)
    table = next(iter(data["tables"].values()))
    assert len(data["items"][table["items"]]) == 250 and len(table["before"]) == 250
    error = next(m for m in table["measures"] if m["name"] == "Error")
    worst = max(range(250), key=lambda i: error["worse"][i])
    assert data["items"][table["items"]][worst]["index"] == ABSURD_INDEX and table["absurd"] == [ABSURD_INDEX]


def test_a_title_cannot_end_the_pages_script(tmp_path):
    from pricer.report.html_page import render
    from pricer.report.html_view import Answer, ItemView, Page

    title = "</script><script>alert(1)</script><!--"
    view = WidthView(width="4bit", name="run", passed=True, items=(
        ItemView(index=1, title=title, truth=1.0, prompt=title, now=Answer(guess=1.0, completion=title, parsed=True)),))
    text = render(Page(title="t", passed=True, widths=(view,)))

    assert "alert(1)</script>" not in text and "<script><!--" not in text and text.count("</script>") == 3
    assert page_data_text(text)["items"]["w0"][0]["title"] == title


# Pieces that end or confuse a <script> element, or that JSON and HTML escape, joined any way.
TEXT = st.lists(st.sampled_from(["</script>", "</SCRIPT ", "<!--", "-->", "<\\/", "\\", '"', "&amp;", "\u2028", "é",
                                 "<b>", " ", "\n", "x"]), max_size=8).map("".join)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(TEXT, TEXT, st.none() | TEXT), min_size=1, max_size=4))
def test_any_text_reaches_the_pages_data_as_it_was_and_ends_no_element(texts):
    from pricer.report.html_page import render
    from pricer.report.html_view import Answer, ItemView, Page

    view = WidthView(width="4bit", name="run", passed=True, items=tuple(
        ItemView(index=i, title=title, truth=1.0, prompt=prompt, now=Answer(guess=2.0, completion=completion,
                                                                            parsed=True))
        for i, (title, prompt, completion) in enumerate(texts, start=1)))
    text = render(Page(title="t", passed=True, widths=(view,)))

    assert text.lower().count("</script") == 3
    shown = page_data_text(text)["items"]["w0"]
    assert [(r["title"], r["prompt"], r["now"][1]) for r in shown] == [(t, p, c) for t, p, c in texts]


def page_data_text(text: str) -> dict:
    start = text.index('id="pricer-data">') + len('id="pricer-data">')
    return json.loads(text[start:text.index("</script>", start)])


def test_a_width_view_survives_its_trip_from_an_xdist_worker(project):
    from pricer.gate.compare import compare_run, read_run
    from pricer.gate.report_views import items_of, width_view
    from pricer.gate.verdict import GateConfig
    from pricer.store.baselines import read_baseline

    run_path = project / "runs" / MODEL / "cpu-float32" / "4bit.json"
    baseline = read_baseline(project / "baselines" / MODEL / "cpu-float32" / "4bit.json")
    verdict = compare_run(baseline, read_run(run_path), GateConfig(), intervals=False).verdict
    view = width_view("4bit", verdict, items=items_of(None, items=read_baseline(run_path).items), baseline=baseline)

    assert WidthView.from_dict(json.loads(json.dumps(view.to_dict()))) == view


def test_report_refuses_to_replace_a_file_it_did_not_write(project, capsys):
    foreign = project / "index.html"
    foreign.write_text("<html>someone else's</html>\n", encoding="utf-8")

    with pytest.raises(SystemExit):
        report(project, str(project / "runs"), out="index.html")

    assert "--out: " in capsys.readouterr().err
    assert foreign.read_text(encoding="utf-8") == "<html>someone else's</html>\n"


def test_report_replaces_its_own_file(project):
    _, path = report(project, str(project / "runs" / MODEL / "cpu-float32" / "8bit.json"), out="again.html")
    code, again = report(project, str(project / "runs" / MODEL / "cpu-float32" / "8bit.json"), out="again.html")

    assert again == path and page_data(path)["items"]


def gate_page(tmp_path: Path, n: int) -> Path:
    """The page the gate writes for a WORSE run of n items, prompts included."""
    from pricer.gate.report_views import items_of, width_view
    from pricer.gate.verdict import GateConfig, compare
    from pricer.report.html_page import write_page
    from pricer.report.html_view import Page
    from pricer.store.baselines import read_baseline

    rows = items(n)
    baseline = read_baseline(store(tmp_path / "4bit.json", rows, predictions(rows, seed=1), fingerprint(n)))
    run = score_run(MODEL, rows, predictions(rows, seed=2, worse=True))
    verdict = compare(baseline, run, fingerprint(n), GateConfig(), intervals=False)
    view = width_view("4bit", verdict, items=items_of(run), baseline=baseline)
    write_page(tmp_path / "gate.html", Page(title="pricer gate", passed=verdict.passed, widths=(view,)))
    return tmp_path / "gate.html"


@pytest.fixture(scope="module")
def gate_pages(tmp_path_factory: pytest.TempPathFactory):
    """gate_page(n), made once per n in this module (2,000 items take the gate's tests 10 s)."""
    made: dict[int, Path] = {}

    def page(n: int) -> Path:
        if n not in made:
            made[n] = gate_page(tmp_path_factory.mktemp(f"gate{n}"), n)
        return made[n]

    return page


@pytest.mark.parametrize(("n", "mib"), [(250, 5.0), (2000, 7.3)])
def test_report_size_stays_reasonable(n, mib, gate_pages):
    """The sizes docs/ci.md states (4.9 and 7.2 MiB): plotly.js (4.6 MiB), then about 1.3 KiB per item with its
    767-character prompt, both answers and its points in the charts."""
    assert gate_pages(n).stat().st_size < mib * 2**20


def test_report_shows_each_comparison_made_baseline_anchor_and_the_target_branchs(tmp_path, capsys):
    import subprocess

    from pricer.store.baselines import read_baseline

    rows, place = items(60), Path(MODEL, "cpu-float32", "4bit.json")
    path = store(tmp_path / "baselines" / place, rows, predictions(rows, seed=1), fingerprint(60), reason="first")
    for command in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "b"]):
        subprocess.run(["git", *command], cwd=tmp_path, check=True)
    write_baseline(path, run=score_run(MODEL, rows, predictions(rows, seed=5)), fingerprint=fingerprint(60),
                   reason="retuned", previous=read_baseline(path))  # the branch rewrites it; the first is the anchor
    store(tmp_path / "runs" / place, rows, predictions(rows, seed=2, worse=True), fingerprint(60))

    code, out = report(tmp_path, str(tmp_path / "runs"), "--against", "HEAD")

    labels = [c.get("data-comparison") for c in _comparisons(out)]
    assert code == 1 and labels[0] == "baseline" and labels[1].startswith("the anchor of ")
    assert labels[2].startswith("HEAD (") and len(labels) == 3
    assert len(page_data(out)["tables"]) == 3  # each with its own items table and charts


def _comparisons(path: Path) -> list[dict[str, str]]:
    """The attributes of each comparison's <details> element, in page order."""
    return [dict(re.findall(r'(\S+)="([^"]*)"', attrs))
            for attrs in re.findall(r'<details class="comparison"([^>]*)>', path.read_text(encoding="utf-8"))]


def test_history_per_width_marks_the_trade_offs_accepted_and_the_anchor(tmp_path, capsys):
    from tests.history.test_history import entry, saved_run

    from pricer.history.accuracy_history import append_accuracy
    from pricer.store.baselines import read_baseline

    rows, place = items(60), Path(MODEL, "cpu-float32", "4bit.json")
    path = store(tmp_path / "baselines" / place, rows, predictions(rows, seed=1), fingerprint(60), reason="first")
    for seed, reason, trade_off in ((5, "4-bit weights", "halve memory"), (6, "new prompt", "")):
        run = score_run(MODEL, rows, predictions(rows, seed=seed))
        write_baseline(path, run=run, fingerprint=fingerprint(60), reason=reason, previous=read_baseline(path),
                       trade_off=trade_off)
    store(tmp_path / "runs" / place, rows, predictions(rows, seed=2), fingerprint(60))
    append_accuracy(tmp_path / "accuracy.jsonl", [entry(minute=1), entry(minute=2, errors=(12.0, 20.0, 30.0, 40.0))])
    for number in (1, 2):
        saved_run(tmp_path / "benchmarks", number, means={"4bit": 1.0 + number / 10})

    code = main(["report", str(tmp_path / "runs"), "--baselines", str(tmp_path / "baselines"), "--out",
                 str(tmp_path / "r.html"), "--accuracy-history", str(tmp_path / "accuracy.jsonl"),
                 "--benchmark-storage", str(tmp_path / "benchmarks")])

    assert code in (0, 1)
    figure = page_data(tmp_path / "r.html")["figures"]["h-4bit"]
    names = [trace["name"] for trace in figure["data"]]
    assert [n.split()[0] for n in names] == ["latency", "Error", "the"]
    marks = figure["data"][-1]["text"]
    assert marks == ["baseline stored: first", "accepted as a trade-off: halve memory (4-bit weights)",
                     "baseline stored: new prompt", "anchor, drift measured from here: 4-bit weights; accepted worse: halve memory"]
    assert len(figure["layout"]["shapes"]) == 4


# ---------------------------------------------------------------- the gate's option


@pytest.fixture(scope="module")
def constant_baselines(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A baselines folder with the constant predictor's baseline on 50 items, made once."""
    from pricer.errors import BaselineError
    from pricer.plugin.session import EvalSession, EvalSettings
    from pricer.task.items import DataSpec

    folder = tmp_path_factory.mktemp("baselines")
    settings = EvalSettings(data=DataSpec(source=str(data_dir), n=50), predictor="constant", baselines=folder,
                            update=True, reason="first")
    with pytest.raises(BaselineError, match="a rewrite never gates green"):
        EvalSession(settings, root=folder).gates.check("constant")
    return folder


@pytest.fixture
def gated(pytester: pytest.Pytester, constant_baselines: Path) -> pytest.Pytester:
    """A user's repo with the constant predictor's baseline on 50 items."""
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_price_gate="import pytest\n\npytestmark = pytest.mark.eval\n\n\n"
                                        "def test_gate(pricer_gate):\n    pricer_gate.check()\n")
    shutil.copytree(constant_baselines, pytester.path / "baselines")
    return pytester


def test_gate_writes_the_html_report_and_the_summary_links_it(gated, data_dir):
    result = gated.runpytest_subprocess("-p", "no:cacheprovider", "-m", "eval", "--pricer-predictor", "constant",
                                        "--pricer-n", "50", "--pricer-data", str(data_dir), "--pricer-html=gate.html",
                                        "--pricer-summary=summary.md", "--pricer-history=history.jsonl")

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"HTML report written to {gated.path / 'gate.html'} (*MiB)"])
    assert "the HTML report `gate.html`" in (gated.path / "summary.md").read_text(encoding="utf-8")
    data = page_data(gated.path / "gate.html")
    assert all("Price is $" in row["prompt"] for row in data["items"]["w0"])  # the gate keeps the prompts
    assert "h-constant" in data["figures"]  # this run's history entry, appended before the page was written


def test_gate_report_holds_each_comparison_made_with_its_reference_answers(gated, data_dir):
    import subprocess

    from pricer.store.baselines import read_baseline

    for command in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "b"]):
        subprocess.run(["git", *command], cwd=gated.path, check=True)
    path = gated.path / "baselines" / "constant" / "classic.json"
    stored = read_baseline(path)  # rewritten on the branch, a dollar off each guess: the committed one is the anchor
    rows = [Item(index=b.index, prompt="", price=b.truth, title=b.title) for b in stored.items]
    moved = [Prediction(guess=b.guess + 1, completion=None, parsed=True) for b in stored.items]
    write_baseline(path, run=score_run(stored.name, rows, moved), fingerprint=stored.fingerprint, reason="moved",
                   previous=stored)

    result = gated.runpytest_subprocess("-p", "no:cacheprovider", "-m", "eval", "--pricer-predictor", "constant",
                                        "--pricer-n", "50", "--pricer-data", str(data_dir), "--pricer-against=HEAD",
                                        "--pricer-html=gate.html")

    result.assert_outcomes(passed=1)
    labels = [c["data-comparison"] for c in _comparisons(gated.path / "gate.html")]
    assert labels[0] == "baseline" and sorted(label.split()[0] for label in labels[1:]) == ["HEAD", "the"]
    tables = page_data(gated.path / "gate.html")["tables"]
    guesses = [table["before"][0][0] for table in tables.values()]
    assert guesses[0] == guesses[1] + 1 == guesses[2] + 1  # each comparison shows its own reference's answers


@pytest.mark.e2e  # xdist workers: `pytest -m e2e`
def test_gate_under_xdist_writes_the_report_from_what_the_worker_relayed(gated, data_dir):
    result = gated.runpytest_subprocess("-p", "no:cacheprovider", "-m", "eval", "--pricer-predictor", "constant",
                                        "--pricer-n", "50", "--pricer-data", str(data_dir), "-n", "2",
                                        "--pricer-html=gate.html")

    result.assert_outcomes(passed=1)
    (view,) = page_data(gated.path / "gate.html")["items"].values()
    assert len(view) == 50 and all(row["prompt"] for row in view)


def test_gate_refuses_an_html_path_it_did_not_write(gated, data_dir):
    (gated.path / "index.html").write_text("<html></html>\n", encoding="utf-8")

    result = gated.runpytest_subprocess("-p", "no:cacheprovider", "-m", "eval", "--pricer-predictor", "constant",
                                        "--pricer-n", "50", "--pricer-data", str(data_dir), "--pricer-html=index.html")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--pricer-html: * is an existing file pricer did not write*"])


# ---------------------------------------------------------------- in a real browser


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra)")
    with playwright.sync_playwright() as driver:
        found = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=BROWSER_ARGS)
        yield found
        found.close()


class Opened:
    """A report opened in a fresh context: its console errors and every request it made."""

    def __init__(self, browser, path: Path) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(path.as_uri())
        self.page.wait_for_selector(".js-plotly-plot")

    def first_cells(self, table: str, count: int = 3) -> list[str]:
        return self.page.locator(f"{table} tbody tr.item td:first-child").all_inner_texts()[:count]


@pytest.fixture
def opened(browser) -> Iterator:
    made = []

    def open_(path: Path) -> Opened:
        made.append(Opened(browser, path))
        return made[-1]

    yield open_
    for o in made:
        o.context.close()


@pytest.mark.e2e  # a real browser: `pytest -m e2e`
def test_browser_opens_the_report_without_errors_or_network(project, opened):
    _, path = report(project, str(project / "runs"), out="all.html")

    o = opened(path)

    assert o.errors == []
    assert o.requests == [path.as_uri()]


@pytest.mark.e2e  # a real browser: `pytest -m e2e`
def test_browser_sorting_and_a_filter_change_what_is_shown(project, opened):
    _, path = report(project, str(project / "runs" / MODEL / "cpu-float32" / "4bit.json"), out="sort.html")
    o = opened(path)
    table = "details.comparison[data-comparison=baseline] .items"
    first = o.first_cells(table)

    o.page.locator(table).get_by_role("columnheader", name="truth", exact=True).click()
    by_truth = o.first_cells(table)
    o.page.locator(f"{table} select").select_option("absurd")
    absurd = o.first_cells(table, count=300)

    assert first == ["1", "2", "3"] and by_truth != first
    assert absurd == [str(ABSURD_INDEX)]
    assert o.page.locator(f"{table} .controls span").inner_text() == "1 of 250 items"
    o.page.locator(f"{table} select").select_option("all")
    o.page.locator(f"{table} input[type=search]").fill("item 42 ")
    assert o.first_cells(table, count=300) == ["42"]
    assert o.errors == []


@pytest.mark.e2e  # a real browser: `pytest -m e2e`
def test_browser_sorted_by_change_the_planted_runs_worst_item_comes_first(project, opened):
    _, path = report(project, str(project / "runs" / MODEL / "cpu-float32" / "4bit.json"), out="worst.html")
    o = opened(path)
    table = "details.comparison[data-comparison=baseline] .items"

    o.page.locator(table).get_by_role("columnheader", name="Error change", exact=True).click()

    assert o.first_cells(table, count=1) == [str(ABSURD_INDEX)]
    o.page.locator(f"{table} tbody tr.item").first.click()  # the prompt and both completions one click away
    shown = o.page.locator(f"{table} tr.detail pre").all_inner_texts()
    assert shown[0].startswith("(not stored") and shown[-1] == "1000000.00"


@pytest.mark.e2e  # a real browser: `pytest -m e2e`
def test_browser_hovering_a_point_names_its_item(project, opened):
    _, path = report(project, str(project / "runs" / MODEL / "cpu-float32" / "4bit.json"), out="hover.html")
    o = opened(path)
    chart = o.page.locator("[data-figure$='-moved']").first
    chart.scroll_into_view_if_needed()
    # Where plotly drew the absurd item: its trace and point, in page pixels.
    x, y = chart.evaluate("""(div) => {
        const trace = div.data.findIndex(t => t.customdata && t.text && t.text.some(s => s.startsWith("#%d ")));
        const i = div.data[trace].text.findIndex(s => s.startsWith("#%d "));
        const L = div._fullLayout, box = div.getBoundingClientRect();
        return [box.left + L._size.l + L.xaxis.d2p(div.data[trace].x[i]),
                box.top + L._size.t + L.yaxis.d2p(div.data[trace].y[i])]; }""" % (ABSURD_INDEX, ABSURD_INDEX))

    o.page.mouse.move(x, y)
    label = chart.locator(".hoverlayer .hovertext")
    label.wait_for()

    assert f"#{ABSURD_INDEX} Item {ABSURD_INDEX} <b>&</b> thing" in label.text_content()


@pytest.mark.e2e  # a real browser: `pytest -m e2e`
def test_browser_opens_a_report_of_2000_items_without_errors(gate_pages, opened):
    path = gate_pages(2000)
    o = opened(path)

    assert o.page.locator(".items .controls span").inner_text() == "2000 of 2000 items"
    assert o.errors == [] and o.requests == [path.as_uri()]


# Guesses of two items in five a thousand times too high, the fourth item's ten million dollars: a WORSE run.
PLANTED = """
import pytest

from pricer.engines.classic import ClassicPredictor
from pricer.engines.predict import Prediction


@pytest.fixture(autouse=True)
def planted(monkeypatch):
    honest = ClassicPredictor.predict

    def predict(self, items):
        return [Prediction(guess=1e7 if i == 3 else 1000 * p.guess if i % 5 < 2 else p.guess, completion=None,
                           parsed=True) for i, p in enumerate(honest(self, items))]

    monkeypatch.setattr(ClassicPredictor, "predict", predict)
"""


@pytest.mark.e2e  # a real browser: `pytest -m e2e`
def test_browser_the_gates_report_of_a_planted_worse_run_sorts_its_worst_item_first(gated, data_dir, opened):
    gated.makeconftest(PLANTED)
    result = gated.runpytest_subprocess("-p", "no:cacheprovider", "-m", "eval", "--pricer-predictor", "constant",
                                        "--pricer-n", "50", "--pricer-data", str(data_dir), "--pricer-html=gate.html")
    result.assert_outcomes(failed=1)
    path = gated.path / "gate.html"
    worst = next(row for row in page_data(path)["items"]["w0"] if row["now"][0] == 1e7)
    o = opened(path)
    table = "details.comparison[data-comparison=baseline] .items"

    o.page.locator(table).get_by_role("columnheader", name="Error change", exact=True).click()

    assert o.first_cells(table, count=1) == [str(worst["index"])]
    assert "WORSE" in o.page.locator("details.comparison summary").first.inner_text()
    assert o.errors == [] and o.requests == [path.as_uri()]


@pytest.mark.e2e  # a real browser: `pytest -m e2e`
def test_browser_report_of_a_run_with_no_baseline_shows_its_items_alone(project, opened):
    _, path = report(project, str(project / "runs" / MODEL / "cpu-float32" / "8bit.json"), out="alone.html")
    o = opened(path)

    assert "no baseline to judge" in o.page.locator("pre.problem").inner_text()
    assert o.page.locator(".items .controls span").inner_text() == "250 of 250 items"
    assert o.errors == [] and o.requests == [path.as_uri()]


@pytest.mark.e2e  # a real browser: `pytest -m e2e`
def test_browser_report_of_a_crossed_class_run_says_the_cross_class_rule_applied(project, opened):
    code, path = report(project, str(project / "crossed"), "--baseline-class", "cpu-float32", out="crossed.html")
    o = opened(path)

    assert "across hardware classes" in o.page.locator("details.comparison p").first.inner_text()
    assert "cross-class rule" in o.page.locator("pre.verdict").first.inner_text()
    assert o.errors == [] and o.requests == [path.as_uri()]


@pytest.mark.e2e  # a real browser: `pytest -m e2e`
def test_browser_report_of_a_served_run_shows_the_server_that_changed(project, opened):
    code, path = report(project, str(project / "served"), out="served.html")
    o = opened(path)
    changes = o.page.locator("table.changes").first.inner_text()

    assert "endpoint_url" in changes and "http://10.0.0.2:8000/v1" in changes
    assert o.errors == [] and o.requests == [path.as_uri()]
    assert math.isfinite(page_data(path)["tables"]["t0-0"]["before"][0][0])
