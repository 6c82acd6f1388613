"""The README's samples stay true: the classic commands it shows are run and their key lines matched, and its LLM
figures are checked against the stored baselines they come from (no model is run)."""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path

import pytest

from pricer.baselines import baseline_path, read_baseline
from pricer.cli import main
from pricer.data import DATA_ENV, DataSpec, load_items
from pricer.errors import DataError
from pricer.metrics import score_item
from pricer.report import metrics_row

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
BASE = "smollm2-135m-instruct"
FINE_TUNED = "smollm2-135m-instruct+smollm2-135m-pricer"
WIDTHS = ("4bit", "8bit", "16bit", "32bit")


def hardware_class() -> str:
    """The class folder of stored baselines the README's LLM figures name, e.g. cpu-bfloat16."""
    match = re.search(rf"baselines/{BASE}/([a-z0-9-]+)/4bit\.json", README)
    assert match, "the README should name the stored baseline its LLM figures come from"
    return match.group(1)


def stored_baseline(model_name: str, width: str) -> Path:
    """The stored baseline of a model at a width: in its hardware class folder, or where baselines sat before."""
    flat = baseline_path(REPO / "baselines", model_name, width)
    classed = flat.parent / hardware_class() / flat.name
    return classed if classed.exists() else flat


def block_after(command: str) -> list[str]:
    """The first indented sample the README shows after `command` (past any prose between them)."""
    lines: list[str] = []
    for line in README[README.index(f"    {command}\n"):].splitlines()[1:]:
        if line.startswith("    "):
            lines.append(line[4:])
        elif line.strip() and lines:
            break
    return lines


def money(text: str) -> float:
    return float(text.replace("$", "").replace(",", ""))


@pytest.fixture(scope="module")
def real_data() -> str:
    source = os.environ.get(DATA_ENV)
    if not source:
        pytest.skip(f"set {DATA_ENV} to the pricer-data folder to run the README's commands")
    return source


@pytest.fixture(scope="module")
def printed(real_data: str) -> dict[str, list[str]]:
    """What `pricer eval --predictor NAME --n 250` prints for each classic predictor (charts off: not checked)."""
    import contextlib
    import io

    out = {}
    for name in ("constant", "linear", "bow", "random-forest"):
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            assert main(["eval", "--data", real_data, "--predictor", name, "--n", "250", "--no-charts"]) == 0
        out[name] = buffer.getvalue().splitlines()
    return out


def test_eval_sample_lines_are_what_the_random_forest_prints(printed: dict[str, list[str]]) -> None:
    shown = [line for line in block_after("pricer eval --predictor random-forest --n 250") if line != "..."]
    assert len(shown) == 3
    assert shown == [printed["random-forest"][0], printed["random-forest"][1], printed["random-forest"][-1]]


def test_classic_figures_are_what_the_predictors_score(printed: dict[str, list[str]]) -> None:
    figures = re.findall(r"(constant|linear|bow \(ridge\)|random forest) (\$[\d.,]+) / ([\d.]+) / ([\d.]+%)", README)
    assert [name for name, *_ in figures] == ["constant", "linear", "bow (ridge)", "random forest"]
    for name, error, rmsle, hits in figures:
        command = {"bow (ridge)": "bow", "random forest": "random-forest"}.get(name, name)
        title = printed[command][-1]
        assert title == f"{command} Error={error} RMSLE={rmsle} Hits={hits}"


def test_random_forest_beats_constant_on_the_real_test_items(printed: dict[str, list[str]]) -> None:
    def error(name: str) -> float:
        return money(re.search(r"Error=(\$[\d,.]+)", printed[name][-1]).group(1))

    assert error("random-forest") < error("constant")


def test_bits_table_row_is_the_stored_4bit_baseline() -> None:
    header, _, row, *_ = block_after("pricer eval --model default --bits 4,8,16,32 --n 250")
    cells = re.split(r"\s{2,}", row.strip())
    stored = read_baseline(stored_baseline(BASE, "4bit")).metrics
    expected = metrics_row(f"{BASE} 4bit", _Metrics(stored))
    assert header.split()[:2] == ["run", "Error"]
    assert cells[:6] == expected  # s/item, the last cell, is the machine's


def test_finetune_table_is_the_stored_baselines() -> None:
    from scipy import stats

    start = README.index("    width  base Error")
    rows = README[start:].split("\n\n")[0].splitlines()[1:]
    assert [row.split()[0] for row in rows] == list(WIDTHS)
    number = r"-?\$?-?[\d,]+\.\d+"
    for row in rows:
        width = row.split()[0]
        values = [money(v) for v in re.findall(number, row)]
        base, tuned = (read_baseline(stored_baseline(name, width)) for name in (BASE, FINE_TUNED))
        better, worse = map(int, re.search(r"(\d+) / (\d+)\s*$", row).groups())
        assert values[:6] == [round(base.metrics["error"], 2), *(round(v, 2) for v in base.metrics["error_ci"]),
                              round(tuned.metrics["error"], 2), *(round(v, 2) for v in tuned.metrics["error_ci"])]
        changes = [score_item(t.guess, t.truth).error - score_item(b.guess, b.truth).error
                   for b, t in zip(base.items, tuned.items)]
        mean = sum(changes) / len(changes)
        low, high = stats.t.interval(0.95, len(changes) - 1, loc=mean, scale=stats.sem(changes))
        assert values[6:9] == [round(mean, 2), round(low, 2), round(high, 2)]
        assert (better, worse) == (sum(c < 0 for c in changes), sum(c > 0 for c in changes))


def test_ini_examples_are_valid_toml() -> None:
    examples = re.findall(r"(pricer_\w+ = (?:\"[^\"]*\"|[^\s`]+))", README)
    assert len(examples) >= 3
    for example in examples:
        tomllib.loads(example)  # raises on an unquoted value such as 4,8


def test_bad_row_example_is_the_message_pricer_gives(tmp_path: Path) -> None:
    shown = re.search(r"`test\.jsonl: (row 2: column 'price': -3 is not a positive number)`", README).group(1)
    path = tmp_path / "test.jsonl"
    rows = [{"text": "Lamp\n\nPrice is $", "price": 5}, {"text": "Chair\n\nPrice is $", "price": -3}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(DataError) as caught:
        load_items(DataSpec(source=str(path), n=None))
    assert str(caught.value) == f"{path}: {shown}"


class _Metrics:
    """A stored baseline's metrics in the shape report.metrics_row reads."""

    def __init__(self, stored: dict) -> None:
        self.error, self.error_ci = stored["error"], tuple(stored["error_ci"])
        self.rmsle, self.hits, self.unparsed = stored["rmsle"], stored["hits"], stored["unparsed"]
