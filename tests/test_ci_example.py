"""examples/github-actions.yml (a matrix of the widths with a baseline, one per job, and a ladder job) and the
example repository's workflow: every `pytest` and `pricer` command line parses with the options that exist now."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pricer.cli.main import build_parser
from pricer.options.parsers import BITS
from pricer.plugin.option_values import OPTIONS

yaml = pytest.importorskip("yaml")  # installed with datasets and transformers

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
WORKFLOW = EXAMPLES / "github-actions.yml"
USER_WORKFLOW = EXAMPLES / "user-repo" / ".github" / "workflows" / "pricer.yml"
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


def argument(argv: list[str], flag: str) -> str:
    """The value of `flag=VALUE` in argv; path options are written with "=", so pytest never takes them for paths."""
    (value,) = [a.split("=", 1)[1] for a in argv if a.startswith(f"{flag}=")]
    return value


def test_the_gate_job_runs_one_width_per_job_over_the_widths_with_a_baseline(workflow):
    gate = workflow["jobs"]["gate"]

    assert gate["strategy"]["matrix"]["bits"] == "${{ fromJSON(needs.widths.outputs.bits) }}"
    assert gate["needs"] == "widths"
    assert gate["strategy"]["fail-fast"] is False  # a failing width must not cancel the runs the ladder needs
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on:` key as True
    assert {"pull_request", "push"} <= set(triggers)


def test_the_widths_job_lists_the_widths_of_the_pinned_class(workflow, tmp_path):
    for model, found in (("m", "cpu-float32/4bit.json"), ("m", "cpu-float32/32bit.json"),
                         ("m", "cpu-bfloat16/8bit.json"), ("other", "cpu-float32/4bit.json")):
        (tmp_path / "baselines" / model / found).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "baselines" / model / found).write_text("{}", encoding="utf-8")
    (step,) = [s for s in workflow["jobs"]["widths"]["steps"] if s.get("id") == "list"]
    output = tmp_path / "output"

    subprocess.run(["bash", "-eo", "pipefail", "-c", step["run"]], cwd=tmp_path, check=True,
                   env={"PATH": "/usr/bin:/bin", "GITHUB_OUTPUT": str(output), **workflow["env"]})

    assert output.read_text(encoding="utf-8") == "bits=[4,32]\n"
    assert workflow["env"] == {"PRICER_COMPUTE_DTYPE": "float32", "PRICER_CLASS": "cpu-float32"}


# A reviewer approves a trade-off the branch stored with this label (pricer.plugin.outcome.APPROVAL_LABEL).
APPROVED = "contains(github.event.pull_request.labels.*.name, 'pricer-trade-off-approved')"


def test_pull_requests_are_gated_against_mains_baselines_with_the_history_to_read_them(workflow):
    for flow in (workflow, yaml.safe_load(USER_WORKFLOW.read_text(encoding="utf-8"))):
        steps = flow["jobs"]["gate"]["steps"]
        checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout"))
        against = [s for s in steps if "--pricer-against=origin/main" in s.get("run", "")]
        assert checkout["with"]["fetch-depth"] == 0
        assert [s["if"] for s in against] == [f"github.event_name == 'pull_request' && !{APPROVED}"]
        committed = [s["if"] for s in steps if s.get("run", "").startswith("pytest") and s not in against]
        assert committed == [f"github.event_name != 'pull_request' || {APPROVED}"]  # never both, never neither
        assert {"labeled", "unlabeled"} <= set(flow.get("on", flow.get(True))["pull_request"]["types"])
    from pricer.plugin.outcome import APPROVAL_LABEL

    assert f"'{APPROVAL_LABEL}'" in APPROVED  # the label the gate's message names


def test_pricer_is_installed_from_a_git_url_not_from_a_checkout_of_it(workflow):
    for flow in (workflow, yaml.safe_load(USER_WORKFLOW.read_text(encoding="utf-8"))):
        installs = [s["run"] for job in flow["jobs"].values() for s in job["steps"] if s.get("name") == "Install pricer"
                    or s.get("name") == "Install"]
        assert installs and all('"pricer @ git+https://' in run and "-e ." not in run for run in installs)


def test_the_ladder_job_needs_the_gate_jobs_and_reads_the_runs_they_upload(workflow):
    jobs = workflow["jobs"]
    ladder = jobs["ladder"]
    needs = ladder["needs"] if isinstance(ladder["needs"], list) else [ladder["needs"]]
    uploads = [s["with"] for s in jobs["gate"]["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
    download = next(s["with"] for s in ladder["steps"] if s.get("uses", "").startswith("actions/download-artifact"))
    saved = next(argument(argv, "--pricer-save-runs") for _, argv in all_commands(workflow, "pytest"))
    ladder_paths = [argv[1] for _, argv in all_commands(workflow, "pricer") if argv[0] == "ladder"]

    assert "gate" in needs
    runs_upload = next(u for u in uploads if u["path"].rstrip("/") == saved)
    prefix = download["pattern"].rstrip("*")
    assert runs_upload["name"].replace("${{ matrix.bits }}", "4").startswith(prefix)
    assert ladder_paths and set(ladder_paths) == {download["path"]}


def test_each_gate_job_uploads_the_html_report_it_writes(workflow):
    uploads = [s["with"] for s in workflow["jobs"]["gate"]["steps"]
               if s.get("uses", "").startswith("actions/upload-artifact")]
    uploaded = {line.strip() for u in uploads for line in u["path"].splitlines()}

    written = {argument(argv, "--pricer-html").replace("4bit", "${{ matrix.bits }}bit")
               for bits, argv in all_commands(workflow, "pytest") if bits == 4}
    assert len(written) == 1 and written <= uploaded


@pytest.mark.parametrize("path", [WORKFLOW, USER_WORKFLOW], ids=["github-actions", "user-repo"])
def test_every_pytest_command_parses_with_the_options_that_exist(path, pytester):
    gate = all_commands(yaml.safe_load(path.read_text(encoding="utf-8")), "pytest")
    flags = {option.plugin for option in OPTIONS}

    assert {bits for bits, _ in gate} == set(BITS)
    for bits, argv in gate:
        assert {a.split("=")[0] for a in argv} >= {"--pricer-summary", "--junitxml", "--pricer-bits"}
        assert {a.split("=")[0] for a in argv if a.startswith("--pricer-")} <= flags
        assert not [a for a in argv if a.startswith("--") and "=" not in a and a not in ("--update-baselines",)]
        # pytest's own parser, with every installed plugin's options and their type checks (--pricer-bits 4).
        config = pytester.parseconfig(*argv)
        assert config.getoption("pricer_bits") == (bits,) and config.getoption("markexpr") == "eval"


def test_every_pricer_command_parses_with_the_cli(workflow):
    used = all_commands(workflow, "pricer")

    assert {argv[0] for _, argv in used} == {"ladder"}
    for _, argv in used:
        build_parser().parse_args(argv)  # exits 2, naming the option, on one that does not exist
