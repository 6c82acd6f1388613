"""The plugin's option values: command line, then ini file, then default, each through its option's parser; checked
together into the session's EvalSettings, so bad or ignored values stop the run with a one-line usage error."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from pricer.errors import OptionError
from pricer.options import parsers as options
from pricer.options import table as option_table
from pricer.options.ignored import refuse_ignored
from pricer.options.ini_values import ini_text
from pricer.options.option import PLUGIN, Option

OPTIONS = tuple(option for option in option_table.OPTIONS if option.plugin)
# Keys naming a file or folder: `pricer_history = true` would otherwise write a file named "True".
PATH_KEYS = tuple(o.ini for o in OPTIONS if o.metavar in ("PATH", "DIR", "SOURCE", "ID_OR_PATH"))
SWITCH_WORDS = ("true", "false", "yes", "no", "on", "off")


def _option(config: pytest.Config, ini: str) -> Any:
    """One option's value (already checked by _settings at configure)."""
    return _value(config, next(option for option in OPTIONS if option.ini == ini))


def _value(config: pytest.Config, option: Option) -> Any:
    """Command line first, then the ini file, then the default; ini values pass the same parser."""
    ini = option.ini
    value = config.getoption(ini)
    if value is not None:
        return value
    try:
        raw = ini_text(option, _ini_raw(config, ini), where=config.inipath)
    except OptionError as exc:
        raise pytest.UsageError(str(exc)) from None
    if raw is None:
        return option.default
    if ini in PATH_KEYS and raw.strip().lower() in SWITCH_WORDS:
        raise pytest.UsageError(f"ini {ini}: {raw!r} is a switch, not a path; name a file or folder "
                                f"(relative to the ini file), e.g. {ini} = \"{option.example or 'NAME'}\"")
    parse = option.parser(PLUGIN)
    try:
        return parse(raw) if parse else raw
    except argparse.ArgumentTypeError as exc:
        raise pytest.UsageError(f"ini {ini}: {exc}") from None


def _ini_raw(config: pytest.Config, key: str) -> Any:
    """An ini key's value as written: TOML's own type in a .toml file (pytest turns [tool.pytest.ini_options] values
    into text, so `pricer_summary = 1` would name a file "1"), text in an ini file or -o; None when unset."""
    from pricer.options.project import ini_settings

    for override in reversed(config.getoption("override_ini", None) or ()):
        name, _, value = override.partition("=")
        if name.strip() == key:
            return value
    held = getattr(config, "_inicfg", None)  # pytest 9: key -> ConfigValue; pytest 8: config.inicfg, key -> text
    held = held if held is not None else config.inicfg
    if key not in held:
        return None
    value = getattr(held[key], "value", held[key])
    if getattr(held[key], "mode", None) == "toml":  # pytest 9's [tool.pytest] or pytest.toml: TOML's own types
        return value
    if config.inipath is not None and config.inipath.suffix == ".toml":  # [tool.pytest.ini_options], made text
        return ini_settings(config.inipath).get(key, value)
    return value


def _settings(config: pytest.Config):  # -> pricer.plugin.session.EvalSettings
    """Every option's value, checked: bad values stop the run before collection with a one-line usage error."""
    from pricer.gate.verdict import GateConfig
    from pricer.plugin.settings import EvalSettings
    from pricer.task.items import DataSpec, resolve_source

    _refuse_unknown_keys(config)
    _refuse_misread_paths(config)
    v = {option.name: _value(config, option) for option in OPTIONS if option.ini}
    update = config.getoption("update_baselines")
    if update and not (v["reason"] or "").strip():
        raise pytest.UsageError("--update-baselines needs --pricer-reason 'why the baselines move'")
    if config.getoption("pricer_reason") is not None and not update:
        raise pytest.UsageError("--pricer-reason says why --update-baselines rewrites the baselines; without "
                                "--update-baselines nothing is rewritten: add it, or leave --pricer-reason out")
    if v["against"] and update:
        raise pytest.UsageError(f"--pricer-against {v['against']} judges a gate against a branch's baselines; "
                                "--update-baselines judges the run against the baseline it replaces: give one")
    if v["accept_worse"] is not None and not (update and v["accept_worse"].strip()):
        raise pytest.UsageError("--pricer-accept-worse names the trade-off that lets --update-baselines store a run "
                                "judged worse, e.g. --pricer-accept-worse='4-bit to halve memory'; give it with "
                                "--update-baselines, and not empty")
    for option, example in (("--pricer-reason", "prompt names the brand first"),
                            ("--pricer-accept-worse", "4-bit to halve memory")):
        if problem := options.placeholder_problem(option, v[option.removeprefix("--pricer-").replace("-", "_")], example=example):
            raise pytest.UsageError(problem)
    _refuse_ignored(config, v)
    endpoint = _endpoint(config, v)
    settings = EvalSettings(
        data=DataSpec(source=resolve_source(v["data"]), split=v["split"], n=v["n"], template=v["template"]),
        model=v["model"], predictor=v["predictor"], bits=endpoint.widths if endpoint else v["bits"],
        adapter=v["adapter"], device=v["device"], endpoint=endpoint,
        batch_size=v["batch_size"], token_budget=v["token_budget"], baseline_class=v["baseline_class"],
        baselines=Path(v["baselines"]), update=update, reason=v["reason"], baseline_name=v["baseline_name"],
        accept_worse=v["accept_worse"], against=v["against"],
        gate=GateConfig(**{option.gate: v[option.name] for option in OPTIONS if option.gate}),
        max_tax_share=v["max_tax"],
        rerun_args=_rerun_args(config.invocation_params.args),
    )
    if len(settings.model_name) > options.NAME_LIMIT:  # derived from the model's (and adapter's) name: too long for a folder
        raise pytest.UsageError(f"the baselines folder name {settings.model_name[:20]!r}..., made from the model's "
                                f"name, is {len(settings.model_name)} characters; a file name holds at most "
                                f"{options.NAME_LIMIT}: name the folder with --pricer-baseline-name")
    return settings


def _endpoint(config: pytest.Config, v: dict[str, Any]):  # -> pricer.engines.endpoint.EndpointConfig | None
    """The served models to ask (--pricer-endpoint), or None; options that only a loaded model takes are refused."""
    from pricer.engines.endpoint.config import endpoint_config

    given = [option.name for option in OPTIONS if option.ini and config.getoption(option.ini) is not None]
    flags = {option.name: option.plugin for option in OPTIONS}
    try:
        return endpoint_config(v, deterministic=config.getoption("pricer_endpoint_deterministic"), given=given,
                               flag=flags.get)
    except argparse.ArgumentTypeError as exc:
        raise pytest.UsageError(str(exc)) from None


def _refuse_unknown_keys(config: pytest.Config) -> None:
    """A mistyped pricer key (pricer_tolernce) would leave its option at the default with only pytest's warning."""
    import difflib

    # pytest's own list of keys no plugin registered (private, in pytest 8 and 9): it only warns about them.
    unknown = getattr(config, "_get_unknown_ini_keys", lambda: ())()
    known = [option.ini for option in OPTIONS if option.ini]
    for key in sorted(k for k in unknown if k.lower().startswith("pricer")):
        close = difflib.get_close_matches(key.lower().replace("-", "_"), known, n=1)
        hint = f"did you mean {close[0]}?" if close else "`pytest --help` lists pricer's keys among the ini-options"
        raise pytest.UsageError(f"{config.inipath}: unknown ini key {key!r}; {hint}")


def _refuse_misread_paths(config: pytest.Config) -> None:
    """`--pricer-data DIR`: pytest picks its ini file before plugins' options are known, so it takes DIR for a test
    path and looks for the ini file from there; when that moves it off the project's, the project's settings (its
    pricer keys, markers, addopts) are silently dropped. `--pricer-data=DIR` cannot be misread."""
    from pricer.errors import PricerError
    from pricer.options.project import ini_file, ini_settings

    if config.getoption("inifilename", None) or config.getoption("rootdir", None):
        return  # the user chose them
    here = config.invocation_params.dir
    args = list(config.invocation_params.args)
    flags = {option.plugin for option in OPTIONS if option.ini in PATH_KEYS}
    misread = [(flag, value) for flag, value in zip(args, args[1:]) if flag in flags and _exists(here / value)]
    if not misread:
        return
    try:
        expected = ini_file(here)
        settings = ini_settings(expected) if expected else {}
    except PricerError:
        return  # a broken ini file: pytest reports it
    found = config.inipath.resolve() if config.inipath else None
    if not settings or found == expected.resolve():
        return  # nothing of the project's was dropped
    flag, value = misread[0]
    raise pytest.UsageError(f"{flag} {value}: pytest took {value} for a test path while looking for its ini file, so "
                            f"it read {found or 'no ini file'}, not {expected}; write {flag}={value}")


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long for the file system names nothing pytest could have taken for a path
        return False


def _project_root(config: pytest.Config) -> Path:
    # Baselines are relative to the project's ini file (else where pytest was started), not the rootdir:
    # pytest guesses the rootdir before plugin options are known, so `--pricer-data DIR` can move it.
    return config.inipath.parent if config.inipath else config.invocation_params.dir


def _refuse_ignored(config: pytest.Config, v: dict[str, Any]) -> None:
    """Paths that cannot be used and options the run would ignore: usage errors now, not tracebacks at the end."""
    from pricer.task.items import resolve_source

    root = _project_root(config)
    # An ini pin (of bits, say) may serve other runs: only the command line counts as given, but for a split,
    # which no run on a single file can use.
    given = {option.name: v[option.name] for option in OPTIONS
             if option.ini and config.getoption(option.ini) is not None}
    if _ini_raw(config, "pricer_split") is not None:
        given["split"] = v["split"]
    try:
        for option in OPTIONS:
            if option.relative and v[option.name]:
                option.parse(option.plugin)(str(root / Path(v[option.name]).expanduser()))
        refuse_ignored(PLUGIN, given=given, predictor=v["predictor"], source=resolve_source(v["data"]))
    except (argparse.ArgumentTypeError, OptionError) as exc:
        raise pytest.UsageError(str(exc)) from None


def _rerun_args(args: Sequence[str]) -> tuple[str, ...]:
    """This run's arguments without the update options and with URLs' passwords as ****, to print a command that
    accepts its results."""
    from pricer.engines.endpoint.config import redacted

    kept = options.without(args, options=("--pricer-reason",), switches=("--update-baselines",))
    return tuple(redacted(arg) for arg in kept)
