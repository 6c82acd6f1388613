"""One option's declaration (Option), and the two surfaces options are given on: the `pricer` command (CLI) and
pytest (PLUGIN), with the words each one's refusals use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pricer.options import parsers as options

_SAME = object()  # cli_default: as `default`
Factory = Callable[[str], Callable[[str], Any]]  # given the flag it quotes in errors, a parser of the option's text


@dataclass(frozen=True, slots=True, kw_only=True)
class Option:
    """One option of `pricer` (cli), pytest (plugin) or both: the same parser, default and help in each."""

    name: str  # unique; an option given both ways is one row
    help: str  # without its default, added from the value; {name} stands for another option's flag, as given here
    cli: str | None = None
    commands: tuple[str, ...] = ()  # the `pricer` commands taking it
    group: str | None = None  # its group in the help of a command with groups (`pricer eval`)
    plugin: str | None = None  # its ini key is the flag without dashes: --pricer-n, pricer_n
    parse: Factory | None = None  # None: text as given
    default: Any = None
    shown: str = "none"  # how the help names a default of None
    cli_default: Any = _SAME  # where `pricer` defaults otherwise on purpose
    cli_shown: str | None = None
    metavar: str | None = None  # None: a switch, given or not
    example: Any = None  # a share's example in its help ("0.5 or 50%"), a path key's in the ini error
    gate: str | None = None  # the GateConfig field it sets
    lacks: str | None = None  # what a classic predictor lacks, named when it refuses this option
    relative: bool = False  # plugin: a path relative to the ini file, checked against it when pytest starts
    ini_list: bool = False  # plugin: the ini file may give a TOML list
    nargs: str | None = None  # cli: "+": several values, and the option several times
    required: bool = False  # cli

    @property
    def ini(self) -> str | None:
        """The plugin's ini key, also its dest (None where pytest has no such key: switches, cli-only options)."""
        return flag_dest(self.plugin) if self.plugin and self.metavar else None

    @property
    def own_cli_default(self) -> bool:
        """Whether `pricer` declares a default of its own, unlike pytest's."""
        return self.cli_default is not _SAME or self.cli_shown is not None

    def default_in(self, surface: Surface) -> Any:
        return self.cli_default if surface is CLI and self.cli_default is not _SAME else self.default

    def parser(self, surface: Surface) -> Callable[[str], Any] | None:
        """The parser its values pass where given; the plugin checks a relative path later, against the ini file."""
        if self.metavar is None:
            return None
        flag = surface.flag(self)
        plain = self.parse is None or (surface is PLUGIN and self.relative)
        return options.non_empty(flag, str if plain else self.parse(flag))


@dataclass(frozen=True, slots=True, kw_only=True)
class Surface:
    """Where options are given, `pricer` or pytest, and the words its refusals use."""

    name: str  # the Option field holding its flags
    llm: str  # what an option a classic predictor ignores applies to
    llm_only: tuple[str, ...]  # those options, refused when given with a predictor
    split_of: str  # what a split is picked from

    @property
    def watched(self) -> tuple[str, ...]:
        """Options whose being given decides a refusal: `pricer` parses them with no default, to tell."""
        return (*self.llm_only, "split", "baseline_class")

    def flag(self, option: Option) -> str | None:
        return getattr(option, self.name)


def flag_dest(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


CLI = Surface(name="cli", llm="--model", llm_only=("bits", "adapter", "device", "batch_size", "token_budget"),
              split_of="a dataset folder (train.jsonl, test.jsonl) or of a hub dataset")
# pytest has refused only these two with a predictor; its device and batching options are ignored there.
PLUGIN = Surface(name="plugin", llm="an LLM", llm_only=("bits", "adapter"), split_of="a dataset folder")
