"""Value parsers shared by the CLI and the pytest plugin; each error quotes the option and the bad value."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pricer.engines.widths import BITS


# The placeholders pricer's printed commands hold (`--pricer-reason why`, `--pricer-accept-worse 'what it buys'`)
# and the options' metavars: stored as a reason or a trade-off, they would say nothing to the next reader.
PLACEHOLDERS = frozenset({"why", "why it changed", "what it buys", "...", "…", "text", "trade-off", "reason", "todo",
                          "tbd", "xxx"})


def placeholder_problem(option: str, value: str | None, *, example: str) -> str | None:
    """Why `value` of `option` is refused as a reason or trade-off (a printed placeholder), else None."""
    if value is None or value.strip().strip("'\"<>[]").strip().lower() not in PLACEHOLDERS:
        return None
    return (f"{option} {value.strip()!r} is the placeholder of a printed command, and would be stored as it is: "
            f"say it in your words, e.g. {option} {example!r}")


def bits_list(option: str) -> Callable[[str], tuple[int, ...]]:
    """Parser for a comma-separated list of bit widths, e.g. "4,8,16,32"."""

    def parse(value: str) -> tuple[int, ...]:
        widths: list[int] = []
        for part in value.split(","):
            part = part.strip().removesuffix("bit")
            if not part.isdigit() or int(part) not in BITS:
                raise argparse.ArgumentTypeError(
                    f"{option}: {part!r} is not one of {', '.join(map(str, BITS))}"
                )
            if int(part) in widths:  # "4,4" is a typo for another width more often than a wish to run 4 once
                raise argparse.ArgumentTypeError(f"{option}: {int(part)} is given twice")
            widths.append(int(part))
        return tuple(widths)

    return parse


def positive_int(option: str) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option}: {value!r} is not a whole number") from None
        if number < 1:
            raise argparse.ArgumentTypeError(f"{option}: {value!r} must be at least 1")
        return number

    return parse


def non_negative_float(option: str) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            number = float(value.rstrip("%").lstrip("$"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option}: {value!r} is not a number") from None
        if not number >= 0 or number == float("inf"):
            raise argparse.ArgumentTypeError(f"{option}: {value!r} must be a finite number >= 0")
        return number

    return parse


def share(option: str) -> Callable[[str], float]:
    """A share given as 0.05 or 5%."""

    def parse(value: str) -> float:
        number = non_negative_float(option)(value)
        number = number / 100 if value.strip().endswith("%") else number
        if number > 1:
            raise argparse.ArgumentTypeError(f"{option}: {value!r} is more than 100%")
        return number

    return parse


def budget(option: str) -> Callable[[str], int | None]:
    """A count of items allowed, or "off" (None): the tail rule's budget."""

    def parse(value: str) -> int | None:
        if str(value).strip().lower() == "off":
            return None
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option}: {value!r} is not a whole number or 'off'") from None
        if number < 0:
            raise argparse.ArgumentTypeError(f"{option}: {value!r} must be 0 or more, or 'off'")
        return number

    return parse


def factor(option: str) -> Callable[[str], float]:
    """A multiple above 1, e.g. 10 (or 10x)."""

    def parse(value: str) -> float:
        try:
            number = positive_float(option)(str(value).strip().removesuffix("x"))
        except argparse.ArgumentTypeError:  # quoting the value as given, not what is left without its "x"
            raise argparse.ArgumentTypeError(f"{option}: {value!r} is not a number above 1, e.g. 10 or 10x") from None
        if number <= 1:
            raise argparse.ArgumentTypeError(f"{option}: {value!r} must be above 1, e.g. 10")
        return number

    return parse


def existing_path(option: str) -> Callable[[str], Path]:
    def parse(value: str) -> Path:
        path = Path(value).expanduser()
        if not path.exists():
            raise argparse.ArgumentTypeError(f"{option}: {value!r} does not exist")
        return path

    return parse


def choice(option: str, choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in choices:
            raise argparse.ArgumentTypeError(f"{option}: {value!r} is not one of {', '.join(choices)}")
        return value

    return parse


def positive_float(option: str) -> Callable[[str], float]:
    """A finite number above 0, e.g. a learning rate: 3e-4."""

    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option}: {value!r} is not a number") from None
        if not 0 < number < float("inf"):
            raise argparse.ArgumentTypeError(f"{option}: {value!r} must be a finite number > 0")
        return number

    return parse


def significance(option: str) -> Callable[[str], float]:
    """A significance level strictly between 0 and 1, as 0.05 or 5%: at 0 a gate can never fail, at 1 always."""

    def parse(value: str) -> float:
        number = share(option)(value)
        if not 0 < number < 1:
            raise argparse.ArgumentTypeError(f"{option}: {value!r} must be above 0 and below 1, e.g. 0.05")
        return number

    return parse


_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


def template(option: str) -> Callable[[str], str]:
    """A prompt template: `\\n`, `\\t` and `\\\\` become a newline, a tab and a backslash, and its columns are checked.

    A shell passes '...\\n...' on as a backslash and an n; left so, every prompt would hold them (a course
    template scored $174.72 instead of $166.02 on 30 items that way).
    """

    def parse(value: str) -> str:
        from pricer.errors import DataError
        from pricer.task.prompts import PRICE_PREFIX
        from pricer.task.rows import template_columns

        text = re.sub(r"\\([nt\\])", lambda match: _ESCAPES[match.group(1)], value)
        try:
            template_columns(text)
        except DataError as exc:
            raise argparse.ArgumentTypeError(f"{option}: {exc}") from None
        if PRICE_PREFIX not in text:  # as a row's text without it is refused: the model would not be asked a price
            raise argparse.ArgumentTypeError(f"{option}: template {text!r} does not contain {PRICE_PREFIX!r}: a "
                                             "prompt ends there, where the model writes the price; end it with that")
        return text

    return parse


def folder(option: str) -> Callable[[str], Path]:
    """A folder to read or create: refused when it, or a folder above it, is a file."""

    def parse(value: str) -> Path:
        from pricer.files import kind

        path = Path(value).expanduser()
        # A link that leads nowhere (a loop, a folder gone) is neither read nor created through
        broken = next((p for p in (path, *path.parents) if p.is_symlink() and not p.exists()), None)
        if broken is not None:
            where = "" if broken == path else f"inside {broken}, which is "
            raise argparse.ArgumentTypeError(f"{option}: {value!r} is {where}{kind(broken)}, not a folder")
        blocking = _first_existing(path)
        if not blocking.is_dir():
            what = "is a file" if blocking == path else f"is inside {blocking}, which is a file"
            raise argparse.ArgumentTypeError(f"{option}: {value!r} {what}, not a folder")
        return path

    return parse


def output_file(option: str) -> Callable[[str], Path]:
    """A file to write: refused when it is a folder, a disk, a socket or a dangling link, or a folder above it is a
    file. A stream (/dev/null, /dev/stdout, a FIFO) is written as it is."""

    def parse(value: str) -> Path:
        from pricer.files import output_problem

        path = Path(value).expanduser()
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{option}: {value!r} is a folder; name a file in it")
        problem = output_problem(path)
        if problem:
            raise argparse.ArgumentTypeError(f"{option}: {value!r} is {problem}")
        return path

    return parse


def summary_file(option: str) -> Callable[[str], Path]:
    """A Markdown file to append to: as output_file, and refused when it exists and is another program's file."""

    def problem(path: Path) -> str | None:
        from pricer.files import append_problem

        return append_problem(path)

    return _output_unless(option, problem)


def run_file(option: str) -> Callable[[str], Path]:
    """A file to store a run in: as output_file, and refused when it exists and is not a run pricer stored."""

    def problem(path: Path) -> str | None:
        from pricer.store.baselines import foreign_file

        return foreign_file(path)

    return _output_unless(option, problem)


def _output_unless(option: str, problem: Callable[[Path], str | None]) -> Callable[[str], Path]:
    """output_file, refusing a path `problem` finds something wrong with (it says what)."""

    def parse(value: str) -> Path:
        path = output_file(option)(value)
        found = problem(path)
        if found:
            raise argparse.ArgumentTypeError(f"{option}: {value!r} is {found}")
        return path

    return parse


def html_file(option: str) -> Callable[[str], Path]:
    """An HTML report to write: as output_file, and refused when it exists and pricer did not write it."""

    def problem(path: Path) -> str | None:
        from pricer.report.html_page import replace_problem

        return replace_problem(path)

    return _output_unless(option, problem)


def non_empty(option: str, parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """`parse`, refusing an empty value: `--pricer-summary="$GITHUB_STEP_SUMMARY"` with the variable unset must not
    quietly mean the default."""

    def parse_given(value: str) -> Any:
        if not str(value).strip():
            raise argparse.ArgumentTypeError(
                f"{option}: an empty value {value!r}; give one, or leave {option} out (a shell turns an unset "
                "environment variable, such as $GITHUB_STEP_SUMMARY outside GitHub Actions, into an empty value)")
        return parse(value)

    return parse_given


def _first_existing(path: Path) -> Path:
    """The path itself if it exists, else its nearest existing ancestor."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def hardware_class(option: str) -> Callable[[str], str]:
    """A hardware class name such as cpu-float32 or cuda-bfloat16."""

    def parse(value: str) -> str:
        from pricer.store.hardware import CLASS_PATTERN

        if not CLASS_PATTERN.match(value):
            raise argparse.ArgumentTypeError(
                f"{option}: {value!r} is not a hardware class: cpu or cuda, a dash, then float32, bfloat16 or float16"
            )
        return value

    return parse


# The longest file name most file systems hold (bytes; names here are ASCII): a baselines folder's name.
NAME_LIMIT = 255


def baseline_name(option: str) -> Callable[[str], str]:
    """A name for a model's baselines folder: letters, digits, '.', '_', '+' and '-', no path."""

    def parse(value: str) -> str:
        import re

        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", value):
            raise argparse.ArgumentTypeError(
                f"{option}: {value!r} is not a baselines folder name: use letters, digits, '.', '_', '+' and '-', "
                "starting with a letter or digit, e.g. 'price-model'")
        if len(value) > NAME_LIMIT:
            raise argparse.ArgumentTypeError(f"{option}: {value[:20]!r}... is {len(value)} characters; a baselines "
                                             f"folder name has at most {NAME_LIMIT}")
        return value

    return parse


def git_ref(option: str) -> Callable[[str], str]:
    """A git revision as `git rev-parse` takes it (origin/main, a tag, a commit); git itself says whether it exists."""

    def parse(value: str) -> str:
        # `~` and `^` are revision syntax (HEAD~1, main^); `:` would name a file in a tree, the rest no ref can hold
        if not value.strip() or value.startswith("-") or any(c.isspace() or c in ":?*[\\" for c in value):
            raise argparse.ArgumentTypeError(f"{option}: {value!r} is not a git branch, tag or commit, e.g. origin/main")
        return value

    return parse


def without(args: Sequence[str], *, options: tuple[str, ...] = (), switches: tuple[str, ...] = (),
            short: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Command-line arguments without these options (with their values, spaced or after "="), switches, and short
    options whose value may also be attached ("-n 2", "-n2", "-nauto")."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in options or arg in short:
            skip = True
        elif not (arg in switches or arg.startswith(tuple(f"{o}=" for o in options))
                  or any(arg.startswith(s) and len(arg) > len(s) for s in short)):
            kept.append(arg)
    return tuple(kept)
