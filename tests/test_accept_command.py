"""The command that accepts a run: built from the options that decide the run, once for every width."""

from __future__ import annotations

from pathlib import Path

import pytest

from pricer.options.parsers import without
from pricer.plugin.outcome import Outcome
from pricer.plugin.session import EvalSession
from pricer.plugin.settings import EvalSettings
from pricer.task.items import DataSpec

CI_ARGS = ("-m", "eval", "--pricer-bits=32", "--pricer-summary=/tmp/tmpabc/summary.md", "--junitxml=report.xml",
           "-n", "2", "--pricer-save-runs=runs", "--pricer-charts", "charts", "--pricer-html=report.html",
           "--pricer-n=24", "--pricer-bits", "32")


def session(root: Path, monkeypatch: pytest.MonkeyPatch, **settings) -> EvalSession:
    monkeypatch.setattr("pricer.store.hardware.this_class", lambda device=None: "cpu-float32")
    return EvalSession(EvalSettings(data=DataSpec(source=str(root / "no-data")), **settings), root=root)


def test_accept_command_keeps_only_the_options_that_decide_the_run(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("PRICER_COMPUTE_DTYPE", raising=False)
    gates = session(tmp_path, monkeypatch, rerun_args=CI_ARGS).gates

    assert gates.accept_command("32bit", reason="why") == (
        "pytest -m eval --pricer-n=24 --pricer-bits=32 --update-baselines --pricer-reason why")


def test_accept_command_pins_the_compute_dtype_that_decided_the_class(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PRICER_COMPUTE_DTYPE", "float32")
    gates = session(tmp_path, monkeypatch, rerun_args=("-m", "eval")).gates

    assert gates.accept_command("4bit", reason="why").startswith("PRICER_COMPUTE_DTYPE=float32 pytest -m eval ")


def test_one_accept_command_covers_every_failing_width(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("PRICER_COMPUTE_DTYPE", raising=False)
    gates = session(tmp_path, monkeypatch, rerun_args=("-m", "eval", "-nauto")).gates
    gates.adopt(outcomes=[Outcome(width=w, path=tmp_path / f"{w}.json", text="", passed=w == "8bit")
                          for w in ("16bit", "8bit", "4bit")])

    assert gates.accept_all() == ("pytest -m eval --pricer-bits=4,16 --update-baselines --pricer-reason why "
                                  "--pricer-accept-worse 'what it buys'")


def test_no_combined_accept_command_for_a_single_failing_width(tmp_path, monkeypatch) -> None:
    gates = session(tmp_path, monkeypatch).gates
    gates.adopt(outcomes=[Outcome(width="4bit", path=tmp_path / "4bit.json", text="", passed=False)])

    assert gates.accept_all() is None


@pytest.mark.parametrize("workers", [("-n", "2"), ("-n2",), ("-nauto",)])
def test_without_drops_a_short_option_with_its_value_spaced_or_attached(workers) -> None:
    assert without(("-m", "eval", *workers, "-x"), short=("-n",)) == ("-m", "eval", "-x")
