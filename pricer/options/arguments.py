"""What argparse's add_argument, or pytest's addoption, takes for each option of the table: its dest, parser,
default and help, other options named by their flags there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pricer.options import parsers as options
from pricer.options.option import CLI, PLUGIN, Option, Surface, flag_dest
from pricer.options.table import OPTIONS


def shown_default(option: Option, surface: Surface) -> str:
    """The default as the help writes it: bits as typed ("4,8"), other values as Python writes them."""
    if surface is CLI and option.cli_shown is not None:
        return option.cli_shown
    value = option.default_in(surface)
    if value is None:
        return option.shown
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return repr(str(value) if isinstance(value, Path) else value)


def help_text(option: Option, surface: Surface, *, with_default: bool = True) -> str:
    """The help in one surface: other options named by their flags there, a share's example, then the default."""
    flags = {other.name: surface.flag(other) or other.cli or other.plugin for other in OPTIONS}
    text = option.help.format_map(flags)
    example = option.example if option.example is not None else option.default_in(surface)
    if option.parse in (options.share, options.significance) and isinstance(example, float):
        text += f" ({example!r} or {100 * example:g}%)"
    if with_default and option.metavar and not option.required:
        text += f". Default: {shown_default(option, surface)}"
    return text


def arguments(option: Option, surface: Surface, *, choice: bool = False) -> dict[str, Any]:
    """What argparse's add_argument (or pytest's addoption) takes for the option there. The plugin defaults every
    option to None, so that an ini key can fill it; `pricer` too where a refusal must see what was given, and for
    `choice`, one of a required pair, which argparse counts as given only when it differs from its default."""
    dest = flag_dest(surface.flag(option))  # the plugin's: its ini key
    text = help_text(option, surface, with_default=not choice).replace("%", "%%")  # argparse formats help with %
    if option.metavar is None:
        return {"dest": dest, "action": "store_true", "help": text}
    unset = surface is PLUGIN or choice or option.name in surface.watched
    kwargs = {"dest": dest, "type": option.parser(surface), "default": None if unset else option.default_in(surface),
              "metavar": option.metavar, "help": text}
    if option.required:
        kwargs["required"] = True
    if option.nargs:
        kwargs |= {"nargs": option.nargs, "action": "extend"}
    return kwargs
