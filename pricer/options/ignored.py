"""The one rule, in both entry points' words, refusing options a run would ignore: a user who gives them means
something the run would not do."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pricer.errors import OptionError
from pricer.options.option import Surface
from pricer.options.table import OPTION
from pricer.task.items import single_file


def refuse_ignored(surface: Surface, *, given: Mapping[str, Any], predictor: str | None, source: str) -> None:
    """Options the run would ignore are errors: a user who gives them means something the run would not do."""
    def flag(name: str) -> str | None:
        return surface.flag(OPTION[name])

    if predictor:
        chosen = f"{flag('predictor')} {predictor}"
        ignored = [name for name in surface.llm_only if name in given]
        if ignored:
            lacks = list(dict.fromkeys(OPTION[name].lacks for name in surface.llm_only))  # "batching" once
            raise OptionError(f"{flag(ignored[0])} applies to {surface.llm}; {chosen} has no {_either(lacks)}")
        if "baseline_class" in given:
            raise OptionError(f"{flag('baseline_class')} applies to {surface.llm}; {chosen} is the same on every "
                              "machine, so its baseline has no hardware class")
    split = given.get("split")
    if split is not None and single_file(source):
        raise OptionError(f"{flag('split')} {split}: {source} is a single file, which is one split; {flag('split')} "
                          f"picks a split of {surface.split_of}")


def _either(words: list[str]) -> str:
    """["bits", "adapter", "device"] -> "bits, adapter or device"."""
    return " or ".join(filter(None, (", ".join(words[:-1]), words[-1])))
