"""Where the project is for the command line: the folder of the pytest ini file, as the plugin resolves paths.

The plugin reads baselines and writes the accuracy history relative to that folder, so `pricer results` and
`pricer history` run from a subfolder must look there too, and read the same ini keys.
"""

from __future__ import annotations

import configparser
import tomllib
from pathlib import Path
from typing import Any

from pricer.errors import OptionError

# pytest's ini files in its own order of precedence, with the section each must hold to count.
INI_FILES = (("pytest.toml", "pytest"), (".pytest.toml", "pytest"), ("pytest.ini", "pytest"), (".pytest.ini", "pytest"),
             ("pyproject.toml", None), ("tox.ini", "pytest"), ("setup.cfg", "tool:pytest"))


def ini_file(start: Path) -> Path | None:
    """The nearest ini file at or above `start` that configures pytest, as pytest finds it; None when there is none."""
    start = Path(start).resolve()
    for folder in (start, *start.parents):
        for name, section in INI_FILES:
            path = folder / name
            if path.is_file() and (name.startswith(("pytest", ".pytest")) or _ini_section(path, section) is not None):
                return path
    return None


def project_root(start: Path) -> Path:
    """The folder of the ini file above `start`, else `start` itself (as the plugin falls back to where it ran)."""
    found = ini_file(start)
    return found.parent if found else Path(start).resolve()


def ini_value(path: Path | None, key: str) -> Any:
    """A pytest ini key's value from that file (e.g. pricer_history) as the file holds it (TOML's own types in a
    .toml file: ini_values.ini_text types it); None when unset or unreadable."""
    if path is None:
        return None
    section = _ini_section(path, dict(INI_FILES).get(path.name))
    return None if section is None else section.get(key)


def ini_settings(path: Path) -> dict:
    """The pytest section of an ini file found by ini_file (key -> value as read); empty when it sets nothing."""
    return _ini_section(path, dict(INI_FILES).get(path.name)) or {}  # `-c other.toml`: read as a pyproject.toml


def _ini_section(path: Path, section: str | None) -> dict | None:
    try:
        if path.suffix == ".toml":
            with path.open("rb") as handle:
                found = tomllib.load(handle)
            if section is not None:  # pytest.toml: a [pytest] table
                return found.get(section)
            # [tool.pytest.ini_options], or pytest 9's native [tool.pytest] table (pytest refuses both at once).
            tool = found.get("tool", {}).get("pytest", {})
            native = {key: value for key, value in tool.items() if key != "ini_options"}
            return tool.get("ini_options", native or None)
    except tomllib.TOMLDecodeError as exc:
        # Passed over, the project would seem to have no settings, and a command would find nothing to show.
        raise OptionError(f"{path}: not valid TOML ({exc}); pytest cannot read it either") from None
    except (OSError, UnicodeDecodeError):
        return None
    try:
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(path, encoding="utf-8")
        return dict(parser[section]) if parser.has_section(section) else None
    except (OSError, UnicodeDecodeError, configparser.Error):
        return None  # pytest itself reports a broken ini file; here it only means "not this one"
