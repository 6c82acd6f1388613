"""The `pricer` command line at its edges: bad paths and ignored options are one-line errors, never a traceback or
a silent pass, and `results` / `history` find the project's files from any folder inside it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pricer.cli.main import build_parser, main
from pricer.engines.evaluate import score_run
from pricer.engines.predict import Prediction
from pricer.store.baselines import baseline_path, write_baseline
from pricer.store.fingerprint import Fingerprint
from pricer.task.items import Item
from pricer.task.prompts import COURSE_TEMPLATE, PRICE_PREFIX, QUESTION

# The README's example, as a user types it in bash between single quotes: backslash-n, not newlines.
README_TEMPLATE = r"How much does this cost to the nearest dollar?\n\n{title}\n{description}\n\nPrice is $"
PROJECT_INI = "[tool.pytest.ini_options]\n"


def data_folder(root: Path) -> Path:
    """A small dataset folder with train and test splits of course-style prompts."""
    folder = root / "pricer-data"
    folder.mkdir(parents=True)
    for split, count in (("train", 12), ("test", 4)):
        rows = [{"text": f"{QUESTION}\n\nWidget {split} {i}\nA widget numbered {i}\n\n{PRICE_PREFIX}",
                 "price": 10.0 + 7 * i} for i in range(count)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def single_file(root: Path) -> Path:
    path = root / "items.jsonl"
    path.write_text(json.dumps({"text": f"Lamp\n\n{PRICE_PREFIX}", "price": 5.0}) + "\n")
    return path


def refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI, expect exit status 2, and return its one-line error (argparse's usage lines dropped)."""
    try:
        code = main(args)
    except SystemExit as exc:  # argparse refuses a bad option value this way
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if "error:" in line][-1]


def test_charts_dir_naming_a_file_is_refused_before_anything_runs(tmp_path: Path, capsys) -> None:
    taken = tmp_path / "charts"
    taken.write_text("not a folder\n")
    line = refused(["eval", "--predictor", "constant", "--data", str(tmp_path / "nowhere"), "--charts-dir", str(taken)],
                   capsys)
    assert f"--charts-dir: '{taken}' is a file, not a folder" in line


def test_chart_path_naming_a_folder_is_refused(tmp_path: Path, capsys) -> None:
    line = refused(["results", "--chart", str(tmp_path)], capsys)
    assert f"--chart: '{tmp_path}' is a folder; name a file in it" in line


def test_readme_template_typed_in_bash_gives_newlines_not_backslashes() -> None:
    args = build_parser().parse_args(["eval", "--model", "default", "--template", README_TEMPLATE])
    assert args.template == COURSE_TEMPLATE


def test_template_naming_the_price_column_is_refused(capsys) -> None:
    line = refused(["eval", "--model", "default", "--template", "{description} Price is ${price}"], capsys)
    assert "--template: template '{description} Price is ${price}' names the 'price' column" in line


def test_split_on_a_single_file_is_refused(tmp_path: Path, capsys) -> None:
    path = single_file(tmp_path)
    line = refused(["eval", "--model", "default", "--data", str(path), "--split", "nosuch"], capsys)
    assert line == (f"pricer: error: --split nosuch: {path} is a single file, which is one split; --split picks a "
                    "split of a dataset folder (train.jsonl, test.jsonl) or of a hub dataset")


@pytest.mark.parametrize("option", [["--bits", "4"], ["--adapter", "."], ["--batch-size", "4"]])
def test_llm_options_with_a_classic_predictor_are_refused(tmp_path: Path, capsys, option: list[str]) -> None:
    line = refused(["eval", "--predictor", "constant", "--data", str(data_folder(tmp_path)), *option], capsys)
    assert f"pricer: error: {option[0]} applies to --model; --predictor constant has no bits" in line


def store_baseline(folder: Path, model: str, width: str) -> Path:
    items = [Item(index=i + 1, prompt=f"p{i}", price=100.0, title=f"t{i}") for i in range(2)]
    run = score_run(f"{model} {width}", items, [Prediction(guess=g, completion=f"{g}") for g in (150.0, 90.0)])
    path = baseline_path(folder, model, width)
    write_baseline(path, run=run, fingerprint=Fingerprint(decisive={"bits": 4}), reason="test", previous=None)
    return path


def test_results_from_a_subfolder_reads_the_project_baselines(tmp_path: Path, capsys, monkeypatch) -> None:
    (tmp_path / "pyproject.toml").write_text(PROJECT_INI)
    store_baseline(tmp_path / "baselines", "smollm2-135m-instruct", "4bit")
    (tmp_path / "docs").mkdir()
    monkeypatch.chdir(tmp_path / "docs")
    code = main(["results", "--data", str(data_folder(tmp_path)), "--n", "4", "--no-chart"])
    out = capsys.readouterr().out
    assert code == 0
    assert "smollm2-135m-instruct 4bit" in out and "$30.00" in out  # |150-100| and |90-100| average $30


def test_results_without_any_stored_baseline_exits_non_zero(tmp_path: Path, capsys, monkeypatch) -> None:
    (tmp_path / "pyproject.toml").write_text(PROJECT_INI)
    monkeypatch.chdir(tmp_path)
    code = main(["results", "--data", str(data_folder(tmp_path)), "--n", "4", "--no-chart"])
    captured = capsys.readouterr()
    assert code == 1
    assert f"pricer: error: no stored baseline of 'default' under {tmp_path / 'baselines'}" in captured.err
    assert "constant" in captured.out  # the classic rows are still shown


def test_history_from_a_subfolder_reads_the_projects_pricer_history_key(tmp_path: Path, capsys, monkeypatch) -> None:
    (tmp_path / "pyproject.toml").write_text(PROJECT_INI + 'pricer_history = "accuracy.jsonl"\n')
    (tmp_path / "accuracy.jsonl").write_text('{"not": "pricer\'s"}\n')  # read, and refused by name
    (tmp_path / "docs").mkdir()
    monkeypatch.chdir(tmp_path / "docs")
    code = main(["history", "--no-chart"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert str(tmp_path / "accuracy.jsonl") in err


def test_a_template_whose_only_column_comes_after_the_price_prefix_is_refused(capsys):
    line = refused(["eval", "--model", "default", "--template", "How much?\\n\\nPrice is ${title}"], capsys)
    assert ("--template: template 'How much?\\n\\nPrice is ${title}' puts every column it names after 'Price is $': "
            "the prompt ends there, where the model writes the price") in line
