"""Value parsers shared by the CLI and the pytest plugin; each error quotes the option and the bad value."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

BITS = (4, 8, 16, 32)


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
            if int(part) not in widths:
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
