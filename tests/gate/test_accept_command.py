"""The command that accepts a run: built from the options that decide the run, once for every width."""

from __future__ import annotations

from pathlib import Path

import pytest

from pricer.errors import BaselineError
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
    gates.adopt(outcomes=[Outcome(width=w, path=tmp_path / f"{w}.json", text="", passed=w == "8bit", worse=w == "4bit")
                          for w in ("16bit", "8bit", "4bit")])

    assert gates.accept_all() == ("pytest -m eval --pricer-bits=4,16 --update-baselines --pricer-reason why "
                                  "--pricer-accept-worse 'what it buys'")


def test_missing_baselines_are_stored_at_once_without_a_trade_off_to_name(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("PRICER_COMPUTE_DTYPE", raising=False)
    gates = session(tmp_path, monkeypatch, rerun_args=("-m", "eval")).gates
    gates.adopt(outcomes=[Outcome(width=w, path=tmp_path / f"{w}.json", text="baseline not found", passed=False)
                          for w in ("16bit", "4bit")])

    assert gates.accept_all(reason="first baseline") == (
        "pytest -m eval --pricer-bits=4,16 --update-baselines --pricer-reason 'first baseline'")
    assert not gates.any_worse


def test_a_missing_baseline_is_made_in_the_class_of_the_models_other_baselines(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("PRICER_COMPUTE_DTYPE", raising=False)
    gates = session(tmp_path, monkeypatch, rerun_args=("-m", "eval", "--pricer-bits=4")).gates
    monkeypatch.setattr(gates.session.home, "_machine_class", "cpu-bfloat16")  # a machine of another class
    made = gates.session.home.path("32bit")  # first baselines made with PRICER_COMPUTE_DTYPE=float32
    made = made.parent.parent / "cpu-float32" / "32bit.json"
    made.parent.mkdir(parents=True)
    made.write_text("{}")

    with pytest.raises(BaselineError) as raised:
        gates.check("4bit")

    text = str(raised.value)
    assert "create it with:\n  PRICER_COMPUTE_DTYPE=float32 pytest -m eval --pricer-bits=4 --update-baselines " in text
    assert "this model's other baselines are cpu-float32, not this machine's cpu-bfloat16" in text


def test_no_combined_accept_command_for_a_single_failing_width(tmp_path, monkeypatch) -> None:
    gates = session(tmp_path, monkeypatch).gates
    gates.adopt(outcomes=[Outcome(width="4bit", path=tmp_path / "4bit.json", text="", passed=False)])

    assert gates.accept_all() is None


@pytest.mark.parametrize("workers", [("-n", "2"), ("-n2",), ("-nauto",)])
def test_without_drops_a_short_option_with_its_value_spaced_or_attached(workers) -> None:
    assert without(("-m", "eval", *workers, "-x"), short=("-n",)) == ("-m", "eval", "-x")


def test_an_adapters_first_gate_points_to_the_base_models_baselines(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("PRICER_COMPUTE_DTYPE", raising=False)
    gates = session(tmp_path, monkeypatch, adapter=tmp_path / "adapters" / "v2", rerun_args=("-m", "eval", "-n", "2")).gates
    base = tmp_path / "baselines" / "smollm2-135m-instruct" / "cpu-float32" / "4bit.json"
    base.parent.mkdir(parents=True)
    base.write_text("{}")

    with pytest.raises(BaselineError) as raised:
        gates.check("4bit")

    text = str(raised.value)
    assert "smollm2-135m-instruct-v2/cpu-float32/4bit.json: baseline not found" in text  # the folder joins with "-"
    assert ("this adapter's first gate: judge it against the base model's baselines first with: pytest -m eval "
            "--pricer-baseline-name=smollm2-135m-instruct (docs/your-repo.md") in text


@pytest.mark.parametrize("option", ["--pricer-reason=why", "--pricer-reason='why it changed'",
                                    "--pricer-accept-worse=what it buys"])
def test_a_placeholder_of_a_printed_command_is_refused_as_a_reason_or_trade_off(pytester, option) -> None:
    pytester.makeini("[pytest]\n")
    reason = () if option.startswith("--pricer-reason") else ("--pricer-reason=cheaper",)

    result = pytester.runpytest("-p", "no:cacheprovider", "-m", "eval", "--pricer-predictor=constant",
                                "--update-baselines", *reason, option)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --pricer-* is the placeholder of a printed command, and would be stored as "
                                 "it is: say it in your words, e.g. --pricer-*"])


def test_pricer_accept_refuses_a_placeholder_reason(tmp_path, capsys) -> None:
    from pricer.cli.main import main

    code = main(["accept", str(tmp_path / "b.json"), str(tmp_path / "r.json"), "--reason", "why"])

    assert code == 2 and "--reason 'why' is the placeholder of a printed command" in capsys.readouterr().err
