"""The options table: `pricer --help` and `pytest --help` give one default and example per shared option, each
default is the value an unset option takes and parses as given, and both refuse ignored options by one rule."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from pricer.cli import main as cli
from pricer.errors import OptionError
from pricer.gate.verdict import GateConfig
from pricer.options.ignored import refuse_ignored
from pricer.options.option import CLI, PLUGIN
from pricer.options.table import OPTION, OPTIONS
from pricer.plugin.option_values import _option

ROOT = Path(__file__).resolve().parents[2]
SHARED = [option for option in OPTIONS if option.cli and option.plugin]
# What each command needs besides its options.
COMMANDS = {"eval": ["--model", "m"], "compare": ["baseline.json", "run.jsonl"], "ladder": ["runs"],
            "finetune": ["--out", "out"], "results": [], "history": [],
            "power": ["baseline.json"], "report": ["runs"]}
# An option's first help line: "  --n N   help..." (argparse) or "  --pricer-n=N   help..." (pytest).
ENTRY = re.compile(r"^  (--[a-z][-a-z]*)(?:[ =]\S+(?: \[.*?\])?)?(?:\s{2,}(\S.*))?$")
DEFAULT = re.compile(r"Default: (.*)$")
EXAMPLE = re.compile(r"\(([\d.]+) or ([\d.]+)%\)")  # a share's example: (0.08 or 8%)
# Measured with the tolerances (see GateConfig), not for a user to move; tail_repertoire is the cross-class rule's.
GATE_ONLY = {"error_trim", "tail_repertoire"}


def help_entries(lines: list[str]) -> dict[str, str]:
    """Each option's help in a --help text, its wrapped lines joined: {"--n": "score the first ... Default: 250"}."""
    entries: dict[str, str] = {}
    flag = None
    for line in lines:
        entry = ENTRY.match(line)
        if entry:
            flag = entry.group(1)
            entries[flag] = entry.group(2) or ""
        elif flag and re.match(r"^ {3,}\S", line):
            entries[flag] = f"{entries[flag]} {line.strip()}".strip()
        else:
            flag = None
    return entries


def cli_help(command: str, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args([command, "--help"])
    return help_entries(capsys.readouterr().out.splitlines())


def plugin_help(pytester: pytest.Pytester) -> dict[str, str]:
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--help")
    return {flag: text for flag, text in help_entries(result.stdout.lines).items() if flag.startswith("--pricer-")}


def default_of(text: str) -> str | None:
    found = DEFAULT.search(text)
    return found.group(1) if found else None


def shown_value(text: str) -> Any:
    """The value a help's "Default: ..." names: 0.08, 'test', 4,8,16,32; None for words ("none", "no limit")."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None


@pytest.fixture(autouse=True)
def wide_help(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")  # argparse and pytest wrap help to the terminal


def test_cli_and_plugin_help_give_one_default_and_example_per_shared_option(pytester, capsys) -> None:
    plugin = plugin_help(pytester)
    helps = {command: cli_help(command, capsys) for command in COMMANDS}
    differing = set()
    for option in SHARED:
        for command in option.commands:
            here, there = helps[command][option.cli], plugin[option.plugin]
            assert EXAMPLE.findall(here) == EXAMPLE.findall(there), (option.cli, here, there)
            if (command, option.group) == ("eval", "predictor"):  # one of a required pair: no default in `pricer`
                assert default_of(here) is None, here
            elif default_of(here) != default_of(there):
                differing.add(option.name)
    # Only where `pricer` declares its own default: eval runs 32 bits, and has no baseline's batching to reuse.
    assert differing == {option.name for option in SHARED if option.own_cli_default}


def test_a_shares_example_is_its_default(capsys, pytester) -> None:
    entries = plugin_help(pytester) | {f"{command} {flag}": text for command in COMMANDS
                                       for flag, text in cli_help(command, capsys).items()}
    examples = 0
    for flag, text in entries.items():
        for share, percent in EXAMPLE.findall(text):
            examples += 1
            assert float(share) * 100 == pytest.approx(float(percent)), (flag, text)
            default = shown_value(default_of(text) or "")
            assert default in (None, float(share)), (flag, text)
    assert examples >= 10  # the tolerances, alpha and max-tax of both


def test_gate_options_default_to_gate_config_and_cover_its_fields(pytester) -> None:
    plugin = plugin_help(pytester)
    gate = {option.gate: option for option in OPTIONS if option.gate}
    assert set(gate) == {field.name for field in dataclasses.fields(GateConfig)} - GATE_ONLY
    for field, option in gate.items():
        assert option.default == getattr(GateConfig(), field)
        assert shown_value(default_of(plugin[option.plugin])) == option.default, plugin[option.plugin]


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.parse and {o.default, o.default_in(CLI)} != {None}],
                         ids=lambda option: option.name)
def test_every_option_parses_its_own_default(option, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)  # results' default adapter is the project's
    for surface in (CLI, PLUGIN):
        flag, default = surface.flag(option), option.default_in(surface)
        if flag is None or default is None:
            continue
        typed = ",".join(map(str, default)) if isinstance(default, tuple) else str(default)
        parsed = option.parse(flag)(typed)
        assert parsed == (Path(default) if isinstance(parsed, Path) else default), (flag, typed)


@pytest.mark.parametrize("command", COMMANDS)
def test_cli_options_left_out_take_the_default_their_help_shows(command, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = vars(cli.build_parser().parse_args([command, *COMMANDS[command]]))
    entries = cli_help(command, capsys)
    for option in OPTIONS:
        text = default_of(entries[option.cli]) if command in option.commands else None
        if text is None or option.name in CLI.watched:  # watched: None here, the default applied by the run
            continue
        value = args[option.cli.removeprefix("--").replace("-", "_")]
        assert value == shown_value(text) or str(value) == shown_value(text), (option.cli, text)


def test_plugin_options_left_out_take_the_default_their_help_shows(pytester) -> None:
    plugin = plugin_help(pytester)
    config = pytester.parseconfig()
    for option in OPTIONS:
        if option.ini:
            assert _option(config, option.ini) == shown_value(default_of(plugin[option.plugin])), option.plugin


@pytest.mark.parametrize(("surface", "given", "line"), [
    (CLI, {"batch_size": 4}, "--batch-size applies to --model; --predictor constant has no bits, adapter, device or "
     "batching"),
    (PLUGIN, {"adapter": Path(".")}, "--pricer-adapter applies to an LLM; --pricer-predictor constant has no bits or "
     "adapter"),
    (PLUGIN, {"baseline_class": "cuda-bfloat16"}, "--pricer-baseline-class applies to an LLM; --pricer-predictor "
     "constant is the same on every machine, so its baseline has no hardware class"),
], ids=["cli", "plugin", "plugin-class"])
def test_llm_options_given_with_a_classic_predictor_are_refused_naming_them(surface, given, line) -> None:
    with pytest.raises(OptionError) as refused:
        refuse_ignored(surface, given=given, predictor="constant", source="data")
    assert str(refused.value) == line


@pytest.mark.parametrize("surface", [CLI, PLUGIN], ids=["cli", "plugin"])
def test_a_split_of_a_single_file_is_refused_naming_the_flag_given(surface, tmp_path) -> None:
    data = tmp_path / "items.jsonl"
    data.write_text(json.dumps({"text": "Lamp\n\nPrice is $", "price": 5.0}) + "\n")
    flag = surface.flag(OPTION["split"])
    refuse_ignored(surface, given={"batch_size": 4, "split": "test"}, predictor=None, source=str(tmp_path))
    with pytest.raises(OptionError, match=f"^{flag} test: {re.escape(str(data))} is a single file, which is one split"):
        refuse_ignored(surface, given={"split": "test"}, predictor=None, source=str(data))


def test_each_name_and_flag_is_one_row() -> None:
    names = [option.name for option in OPTIONS]
    plugin = [option.plugin for option in OPTIONS if option.plugin]
    assert len(names) == len(set(names)) and len(plugin) == len(set(plugin))
    for command in COMMANDS:
        flags = [option.cli for option in OPTIONS if command in option.commands]
        assert len(flags) == len(set(flags)), command
    assert all(option.ini.startswith("pricer_") for option in OPTIONS if option.ini)


@pytest.mark.parametrize("value", ["x", "xx", "ten x"])
def test_a_factor_that_is_not_a_number_is_quoted_as_given(value, capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["compare", "baseline.json", "run.jsonl", f"--tail-factor={value}"])

    assert f"--tail-factor: {value!r} is not a number above 1, e.g. 10 or 10x" in capsys.readouterr().err


@pytest.mark.parametrize("option", [option for option in OPTIONS if option.ini], ids=lambda option: option.ini)
def test_every_ini_key_refuses_a_toml_table_naming_key_type_and_an_example(option) -> None:
    from pricer.options.ini_values import ini_text

    with pytest.raises(OptionError, match=rf"^pyproject\.toml: ini {option.ini} = \{{'x': 1\}} is a TOML table; "
                                          rf"{option.ini} takes .*, e\.g\. {option.ini} = \S"):
        ini_text(option, {"x": 1}, where="pyproject.toml")
