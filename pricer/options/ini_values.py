"""An ini key's value as the text its option's parser takes: the one place ini values are typed (TOML numbers,
lists, text), refusing any other type naming the key and an example."""

from __future__ import annotations

import json
from typing import Any

from pricer.errors import OptionError
from pricer.options import parsers as options
from pricer.options.option import Option

# Parsers of numbers, each with an example: their ini keys take TOML numbers as well as text (pricer_n = 250).
NUMBER_PARSERS = {options.positive_int: 8, options.non_negative_float: 100, options.share: 0.05, options.budget: 1,
                  options.factor: 10, options.positive_float: 0.001, options.significance: 0.05}
_TOML_TYPES = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}


def ini_text(option: Option, raw: Any, *, where: object, inside: bool = False) -> str | None:
    """An ini key's value, as read from the file (TOML's own types in a .toml file), as the text its parser takes;
    None when unset. The one place ini values are typed: numbers for number keys, lists for list keys, text for all;
    any other type, or an empty value, is refused naming the key, the type and an example. `inside`: an item of a
    list, which is never a list itself."""
    key = option.ini
    if raw is None:
        return None
    if isinstance(raw, list) and option.ini_list and not inside:
        if not raw:
            raise OptionError(f"{where}: ini {key} = [] is an empty list; give it values, e.g. {_ini_example(option)}, "
                              "or remove the key to take the default")
        parts = [ini_text(option, part, where=where, inside=True) for part in raw]  # a list in it is refused below
        return ",".join(part.strip() for part in parts if part is not None)
    numeric = option.ini_list or option.parse in NUMBER_PARSERS
    if isinstance(raw, (int, float)) and not isinstance(raw, bool) and numeric:
        return str(raw)
    if isinstance(raw, str):
        if not raw.strip():
            raise OptionError(f"{where}: ini {key} is empty; give it a value, e.g. {_ini_example(option)}, or remove "
                              "the key to take the default")
        # An ini file's list is one value per line: pricer_bits =\n  4\n  8
        return ",".join(line.strip() for line in raw.splitlines() if line.strip()) if option.ini_list else raw
    kind = _TOML_TYPES.get(type(raw), type(raw).__name__)
    takes = "a number" if numeric else "text in quotes"
    shown = json.dumps(raw) if isinstance(raw, bool) else repr(raw)  # as TOML writes a boolean: true, not True
    raise OptionError(f"{where}: ini {key} = {shown} is a TOML {kind}; {key} takes {takes}"
                      f"{' or a list of them' if option.ini_list else ''}, e.g. {_ini_example(option)}")


def _ini_example(option: Option) -> str:
    value = option.example if option.example is not None else option.default
    if option.ini_list and isinstance(value, tuple):
        return f"{option.ini} = [{', '.join(map(str, value))}]"
    if option.parse in NUMBER_PARSERS:
        return f"{option.ini} = {value if isinstance(value, (int, float)) else NUMBER_PARSERS[option.parse]}"
    return f'{option.ini} = "{option.metavar if value is None else value}"'
