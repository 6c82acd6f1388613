"""pricer.plugin.summary: a verdict as a Markdown block and as JUnit properties; a session's blocks as one document."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pricer.engines.evaluate import score_run
from pricer.engines.predict import Prediction
from pricer.gate.verdict import GateConfig, Verdict, compare
from pricer.plugin import summary
from pricer.plugin.outcome import Outcome
from pricer.store.baselines import read_baseline, write_baseline
from pricer.store.fingerprint import Fingerprint
from pricer.task.items import Item

N = 60
FINGERPRINT = Fingerprint(decisive={"predictor": "constant", "data_sha256": "abc", "n": N})
ABSURD = 1e9  # one answer far above every truth and the baseline's largest: the tail rule lists it


def gated(tmp_path: Path, *, worse: bool) -> Verdict:
    """A verdict on N items: the run triples 40% of the guesses when `worse`, and gives one absurd answer."""
    items = [Item(index=i + 1, prompt="", price=20.0 + 7 * i, title=f"item {i + 1} | 50$ off") for i in range(N)]
    guesses = [item.price * (1.2 if i % 2 else 0.8) for i, item in enumerate(items)]
    path = tmp_path / "baselines" / "constant" / "classic.json"
    write_baseline(path, run=score_run("constant", items, [Prediction(guess=g) for g in guesses]),
                   fingerprint=FINGERPRINT, reason="test", previous=None)
    now = [3 * g if worse and i % 5 < 2 else g for i, g in enumerate(guesses)]
    now[-1] = ABSURD
    run = score_run("constant", items, [Prediction(guess=g) for g in now])
    return compare(read_baseline(path), run, FINGERPRINT, GateConfig(), intervals=False)


def row_of(lines: list[str], measure: str) -> list[str]:
    """The cells of one measure's row in a Markdown table."""
    line = next(line for line in lines if line.startswith(f"| {measure} |"))
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]


def test_failing_block_names_the_measure_its_row_the_items_the_chart_and_the_accepting_command(tmp_path):
    verdict = gated(tmp_path, worse=True)

    lines = summary.verdict_block(verdict, title="constant", baseline="baselines/constant/classic.json",
                                  accept="pytest -m eval --update-baselines --pricer-reason why",
                                  chart=".pricer/charts/constant/classic-moved.png")

    assert not verdict.passed
    assert lines[0] == "### constant: FAILED"
    assert any(line.startswith("- Error is worse by \\$") for line in lines)
    assert row_of(lines, "Error")[-1] == "WORSE"
    assert len(row_of(lines, "Error")) == len(row_of(lines, "measure"))
    assert any(line.startswith("| absurd answers (\\> 10x guess") for line in lines)  # the tail rule's row
    assert f"- #{N} item {N} \\| 50\\$ off: truth" in "\n".join(lines)  # its absurd answer
    worst = row_of(lines, f"#{verdict.worst[0].index}")
    assert worst[1] == f"item {verdict.worst[0].index} \\| 50\\$ off"  # a title's pipe stays inside its cell
    assert "Chart of what moved: `.pricer/charts/constant/classic-moved.png`" in lines
    assert lines[-3:] == ["```sh", "pytest -m eval --update-baselines --pricer-reason why", "```"]


def test_passing_block_says_so_and_offers_no_command(tmp_path):
    verdict = gated(tmp_path, worse=False)

    lines = summary.verdict_block(verdict, title="constant", baseline="b.json", accept="never shown")

    assert verdict.passed and lines[0] == "### constant: passed"
    # One absurd answer (within the tail budget) moves the plain Error past its tolerance: never "ok" beside it.
    assert row_of(lines, "Error")[-1] == "not counted" and "never shown" not in "\n".join(lines)


def test_junit_properties_carry_every_column_of_every_measure_and_the_verdict(tmp_path):
    verdict = gated(tmp_path, worse=True)

    properties = dict(summary.junit_properties(verdict, width="4bit", baseline="b.json", hardware="cpu-float32",
                                               chart="moved.png"))

    assert properties["pricer.verdict"] == "FAILED" and properties["pricer.hardware_class"] == "cpu-float32"
    assert properties["pricer.width"] == "4bit" and properties["pricer.chart"] == "moved.png"
    assert properties["pricer.error.verdict"] == "WORSE" and properties["pricer.error.baseline"].startswith("$")
    for measure in ("error", "log_error", "hits", "unparsed", "tail"):
        assert {f"pricer.{measure}.{column}" for column in ("baseline", "now", "holm_p", "verdict")} <= set(properties)
    assert "Error is worse by $" in properties["pricer.reason"]


def test_junit_properties_carry_each_cell_as_a_number_beside_its_text(tmp_path):
    verdict = gated(tmp_path, worse=True)

    properties = dict(summary.junit_properties(verdict, width="4bit", baseline="b.json"))

    error = verdict.judgements[0]
    assert properties["pricer.error.baseline"] == f"${float(properties['pricer.error.baseline.value']):,.2f}"
    assert float(properties["pricer.error.change_tested.value"]) == pytest.approx(error.worsening, rel=1e-5)
    assert float(properties["pricer.error.holm_p.value"]) == pytest.approx(error.p_holm, rel=1e-5)
    assert properties["pricer.passed.value"] == "0"
    hits = next(j for j in verdict.judgements if j.measure.name == "Hits")
    assert float(properties["pricer.hits.change_mean.value"]) == pytest.approx(-hits.mean_change, rel=1e-5, abs=1e-9)


def test_document_lists_widths_in_width_order_a_problem_as_its_message_and_the_ladder(tmp_path):
    outcomes = [Outcome(width="32bit", path=tmp_path / "32bit.json", text="32bit: ok", passed=True),
                Outcome(width="4bit", path=tmp_path / "4bit.json", passed=False,
                        text="4bit.json: baseline not found; create it with:\n  pytest --update-baselines")]
    ladder = (("quantization ladder against 32bit:", False), ("  4bit: Error $30.00 vs 32bit $10.00", True),
              ("quantization tax past --pricer-max-tax: 4bit", True))

    text = summary.session_document(model="m", widths=("4bit", "8bit", "32bit"), outcomes=outcomes,
                                    blocks={"32bit": "### 32bit: passed\n\nNot measurably worse."}, ladder=ladder)

    assert text.splitlines()[0] == "## pricer gate: m: FAILED (4bit)"
    assert text.index("### 4bit: FAILED") < text.index("### 32bit: passed")  # width order, not arrival order
    assert "```text\n4bit.json: baseline not found; create it with:\n  pytest --update-baselines\n```" in text
    assert "### quantization ladder against 32bit" in text
    assert "- 4bit: Error \\$30.00 vs 32bit \\$10.00 **past --pricer-max-tax**" in text
    assert text.endswith("**quantization tax past --pricer-max-tax: 4bit**\n")


@pytest.mark.parametrize(("before", "joined"), [
    ("", "## new\n"),
    ("earlier\n", "earlier\n\n## new\n"),
    ("earlier", "earlier\n\n## new\n"),
    ("earlier\n\n", "earlier\n\n## new\n"),
], ids=["new-file", "newline", "no-newline", "blank-line"])
def test_append_document_keeps_what_the_file_held_and_starts_a_new_paragraph(tmp_path, before, joined):
    path = tmp_path / "summary.md"
    if before:
        path.write_text(before, encoding="utf-8")

    summary.append_document(path, "## new\n")

    assert path.read_text(encoding="utf-8") == joined


def test_markdown_text_escapes_what_github_would_read_as_markup_or_math():
    assert summary.markdown_text("$1 | *a* <b> [c] ~d~ `e` _f_") == \
        "\\$1 \\| \\*a\\* \\<b\\> \\[c\\] \\~d\\~ \\`e\\` \\_f\\_"
    assert summary.property_slug("95% CI") == "ci_95" and summary.property_slug("log error") == "log_error"
