"""examples/github-actions.yml: a matrix of one width per job and a ladder job, whose every `pytest` and `pricer`
command line parses with the options that exist now."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from pricer.cli import build_parser
from pricer.options import BITS
from pricer.pytest_plugin import OPTIONS

yaml = pytest.importorskip("yaml")  # installed with datasets and transformers

WORKFLOW = Path(__file__).resolve().parents[1] / "examples" / "github-actions.yml"
SEPARATORS = {"&&", "||", ";", "|", "(", ")", "{", "}"}


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def commands(script: str, *, bits: int) -> list[list[str]]:
    """The command lines of a `run:` script, GitHub's expressions filled in, split at shell separators."""
    script = script.replace("${{ matrix.bits }}", str(bits)).replace("\\\n", " ")
    script = re.sub(r"\$\{\{[^}]*\}\}", "expression", script)
    found = []
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words: list[str] = []
        for word in [*lexer, ";"]:
            if word in SEPARATORS or set(word) <= set(";&|>"):
                if words:
                    found.append(words)
                words = []
            else:
                words.append(word)
    return found


def all_commands(workflow: dict[str, Any], program: str) -> list[tuple[int, list[str]]]:
    """(width, argv after the program) of every `program` command in any job, for every width of the matrix."""
    found = []
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            for bits in BITS:
                for words in commands(step.get("run", ""), bits=bits):
                    if words[0] == program:
                        found.append((bits, words[1:]))
    return found


def test_the_gate_job_runs_one_width_per_job_over_every_width(workflow):
    gate = workflow["jobs"]["gate"]

    assert gate["strategy"]["matrix"]["bits"] == list(BITS)
    assert gate["strategy"]["fail-fast"] is False  # a failing width must not cancel the runs the ladder needs
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on:` key as True
    assert {"pull_request", "push"} <= set(triggers)


def test_the_ladder_job_needs_the_gate_jobs_and_reads_the_runs_they_upload(workflow):
    jobs = workflow["jobs"]
    ladder = jobs["ladder"]
    needs = ladder["needs"] if isinstance(ladder["needs"], list) else [ladder["needs"]]
    uploads = [s["with"] for s in jobs["gate"]["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
    download = next(s["with"] for s in ladder["steps"] if s.get("uses", "").startswith("actions/download-artifact"))
    saved = next(argv[argv.index("--pricer-save-runs") + 1] for _, argv in all_commands(workflow, "pytest"))
    ladder_paths = [argv[1] for _, argv in all_commands(workflow, "pricer") if argv[0] == "ladder"]

    assert "gate" in needs
    runs_upload = next(u for u in uploads if u["path"].rstrip("/") == saved)
    prefix = download["pattern"].rstrip("*")
    assert runs_upload["name"].replace("${{ matrix.bits }}", "4").startswith(prefix)
    assert ladder_paths and set(ladder_paths) == {download["path"]}


def test_every_pytest_command_parses_with_the_options_that_exist(workflow, pytester):
    gate = all_commands(workflow, "pytest")
    flags = {option.plugin for option in OPTIONS}

    assert {bits for bits, _ in gate} == set(BITS)
    for bits, argv in gate:
        assert {"--pricer-summary", "--junitxml", "--pricer-save-runs"} <= set(argv)
        assert {a for a in argv if a.startswith("--pricer-")} <= flags
        # pytest's own parser, with every installed plugin's options and their type checks (--pricer-bits 4).
        config = pytester.parseconfig(*argv)
        assert config.getoption("pricer_bits") == (bits,) and config.getoption("markexpr") == "eval"


def test_every_pricer_command_parses_with_the_cli(workflow):
    used = all_commands(workflow, "pricer")

    assert {argv[0] for _, argv in used} == {"ladder"}
    for _, argv in used:
        build_parser().parse_args(argv)  # exits 2, naming the option, on one that does not exist
