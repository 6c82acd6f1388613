"""results: the course's table read back, stored LLM rows per width, classic rows, the table and the chart."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pricer.cli.results import collect_results, format_results, read_course_table, results_chart
from pricer.engines.evaluate import score_run
from pricer.engines.predict import Prediction
from pricer.errors import BaselineError
from pricer.store.baselines import baseline_path, write_baseline
from pricer.store.fingerprint import Fingerprint
from pricer.task.items import Item
from pricer.task.prompts import PRICE_PREFIX, QUESTION

COURSE_README = """# Tester outputs

| predictor | Error | RMSLE | Hits |
| --- | --- | --- | --- |
| constant_pricer | $145.51 | 1.22 | 16.8% |
| random_forest_pricer | $97.11 | 0.88 | 34.0% |
| gpt_4o_frontier | $75.92 | 0.75 | 58.0% |
"""
WORDS = {"socks": 8.0, "laptop": 900.0, "mug": 6.0, "monitor": 250.0}


def _rows(count: int) -> list[dict]:
    names = list(WORDS)
    return [{"text": f"{QUESTION}\n\n{names[i % 4]} model {i}\nA {names[i % 4]} numbered {i}\n\n{PRICE_PREFIX}"
             f"{round(WORDS[names[i % 4]])}.00", "price": WORDS[names[i % 4]] + i % 3} for i in range(count)]


@pytest.fixture
def data(tmp_path) -> Path:
    """A data folder with train and test splits, and the course's table beside it, as in the shared data."""
    folder = tmp_path / "pricer-data"
    folder.mkdir()
    for split, count in (("train", 24), ("test", 8)):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in _rows(count)))
    course = tmp_path / "course-2024-tester-outputs"
    course.mkdir()
    (course / "README.md").write_text(COURSE_README)
    return folder


def _store(root: Path, model_name: str, width: str, guesses: list[float], *, hardware_class: str | None = None) -> None:
    items = [Item(index=i + 1, prompt=f"p{i}", price=100.0, title=f"t{i}") for i in range(len(guesses))]
    run = score_run(f"{model_name} {width}", items, [Prediction(guess=g, completion=f"{g}") for g in guesses])
    write_baseline(baseline_path(root, model_name, width, hardware_class=hardware_class), run=run,
                   fingerprint=Fingerprint(decisive={"bits": 4}), reason="test", previous=None)


def test_course_table_rows_are_read_with_their_figures(data):
    rows = read_course_table(data.parent / "course-2024-tester-outputs" / "README.md")
    assert [(r.name, r.error, r.rmsle, r.hits) for r in rows] == [
        ("constant_pricer", 145.51, 1.22, 0.168), ("random_forest_pricer", 97.11, 0.88, 0.34),
        ("gpt_4o_frontier", 75.92, 0.75, 0.58)]


def test_a_readme_without_the_table_fails_naming_the_file(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("# nothing here\n")
    with pytest.raises(BaselineError, match=f"{path}: no .* rows found"):
        read_course_table(path)


def test_results_hold_classic_base_and_fine_tuned_rows_per_width_and_the_course_figures(data, tmp_path):
    root = tmp_path / "baselines"
    for width in ("4bit", "32bit"):
        _store(root, "smollm2-135m-instruct", width, [300.0, 100.0])
        _store(root, "smollm2-135m-instruct+tuned", width, [120.0, 100.0])
    results = collect_results(data=str(data), n=8, model="default", adapter=Path("adapters/tuned"),
                              baselines=root, course=None)
    names = [(r.kind, r.name) for r in results.rows]
    assert names[:4] == [("classic", n) for n in ("constant", "linear", "bow", "random-forest")]
    assert names[4:] == [("base", "smollm2-135m-instruct 4bit"), ("base", "smollm2-135m-instruct 32bit"),
                         ("fine-tuned", "smollm2-135m-instruct+tuned 4bit"),
                         ("fine-tuned", "smollm2-135m-instruct+tuned 32bit")]
    assert [r.error for r in results.rows[4:]] == [100.0, 100.0, 10.0, 10.0]
    assert [r.name for r in results.course] == ["constant_pricer", "random_forest_pricer", "gpt_4o_frontier"]
    # Widths without a stored baseline are named, not silently dropped.
    assert sum("8bit.json: not found" in m for m in results.missing) == 2

    table = format_results(results)
    assert re.search(r"^smollm2-135m-instruct\+tuned 4bit +fine-tuned +\$10\.00 ", table, re.MULTILINE)
    assert "gpt_4o_frontier" in table and "not shown: " in table


def test_results_chart_is_written_whole(data, tmp_path):
    root = tmp_path / "baselines"
    _store(root, "smollm2-135m-instruct", "4bit", [300.0, 100.0])
    results = collect_results(data=str(data), n=8, model="default", adapter=None, baselines=root, course=None)
    path = tmp_path / "charts" / "results.png"
    results_chart(path, results)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["results.png"]  # no temp file left beside it


def test_cli_results_prints_the_table_and_writes_the_chart(data, tmp_path, capsys):
    from pricer.cli.main import main

    chart = tmp_path / "results.svg"
    _store(tmp_path / "baselines", "smollm2-135m-instruct", "4bit", [300.0, 100.0])
    code = main(["results", "--data", str(data), "--n", "8", "--baselines", str(tmp_path / "baselines"),
                 "--chart", str(chart)])
    out = capsys.readouterr().out
    assert code == 0 and chart.is_file()
    assert "random-forest" in out and "gpt_4o_frontier" in out and f"wrote {chart}" in out


def test_stored_rows_are_read_from_the_only_hardware_class_folder(data, tmp_path):
    root = tmp_path / "baselines"
    _store(root, "smollm2-135m-instruct", "4bit", [300.0, 100.0], hardware_class="cpu-bfloat16")
    results = collect_results(data=str(data), n=8, model="default", adapter=None, baselines=root, course=None)
    (row,) = [r for r in results.rows if r.kind == "base"]
    assert (row.name, row.error) == ("smollm2-135m-instruct 4bit", 100.0)
    assert f"{root}/smollm2-135m-instruct/cpu-bfloat16/8bit.json: not found" in results.missing


def test_hardware_class_asked_for_is_the_one_shown(data, tmp_path):
    root = tmp_path / "baselines"
    _store(root, "smollm2-135m-instruct", "4bit", [300.0, 100.0], hardware_class="cpu-bfloat16")
    _store(root, "smollm2-135m-instruct", "4bit", [150.0, 90.0], hardware_class="cuda-bfloat16")
    results = collect_results(data=str(data), n=8, model="default", adapter=None, baselines=root, course=None,
                              hardware_class="cuda-bfloat16")
    assert [r.error for r in results.rows if r.kind == "base"] == [30.0]


def test_a_class_with_no_stored_baselines_names_the_classes_there_are(data, tmp_path):
    root = tmp_path / "baselines"
    _store(root, "smollm2-135m-instruct", "4bit", [300.0, 100.0], hardware_class="cpu-bfloat16")
    results = collect_results(data=str(data), n=8, model="default", adapter=None, baselines=root, course=None,
                              hardware_class="cpu-float32")
    assert not [r for r in results.rows if r.kind == "base"]
    assert results.missing[0] == (f"{root / 'smollm2-135m-instruct'}: no baselines of class cpu-float32; "
                                  "it has cpu-bfloat16 (pass --hardware-class)")
