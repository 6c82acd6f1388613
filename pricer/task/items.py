"""What a run prices: Item and DataSpec, the data's defaults and where its source is, and the digests that say
which items (and which prompts) a run sees."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pricer.errors import OptionError

DEFAULT_DATASET = "ed-donner/pricer-data"
DEFAULT_SPLIT = "test"
DEFAULT_N = 250  # the course's Tester scores the first 250 test items
DATA_ENV = "PRICER_DATA"
PRICE_COLUMN = "price"  # the answer: never part of a prompt


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    """One product: the prompt a model completes, its true price and the title the report prints."""

    index: int  # 1-based position in the source split, as the course numbers items
    prompt: str
    price: float
    title: str
    # A digest of the row's own columns but the price, whatever template renders them: which product this is.
    key: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DataSpec:
    """Where items come from; everything that decides which items a run sees."""

    source: str = DEFAULT_DATASET
    split: str = DEFAULT_SPLIT  # a single file is one split: the CLI and the plugin refuse a --split for it
    n: int | None = DEFAULT_N
    template: str | None = None  # None: the rows' `text` column already holds the prompt


def resolve_source(explicit: str | None) -> str:
    """The data source: an explicit option wins, then $PRICER_DATA, then the course's hub dataset."""
    return explicit or os.environ.get(DATA_ENV) or DEFAULT_DATASET


def single_file(source: str) -> bool:
    """Whether the source is one local data file, which is one split: it has no train split and no --split."""
    return Path(source).expanduser().is_file()


def refuse_single_file(source: str, *, option: str, data_option: str = "--pricer-data", split: str = "train") -> None:
    """OptionError when a classic predictor (`option`) would train on a single file: it has no train split."""
    if single_file(source):
        raise OptionError(f"{option}: {source} is a single file, so it has no {split!r} split to train on; point "
                          f"{data_option} at a folder or dataset with both")


def items_digest(items: Sequence[Item]) -> str:
    """A hash of exactly what a model sees and is scored against: prompts and prices, in order."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(item.prompt.encode("utf-8") + b"\0" + repr(item.price).encode() + b"\n")
    return digest.hexdigest()


def identity_digest(items: Sequence[Item]) -> str:
    """A hash of which items a run prices (index, the row's own columns, price), not of the prompts they are
    turned into: a new template is a change to judge against the same items, not other data."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(f"{item.index}\0{item.key}\0{item.price!r}\n".encode())
    return digest.hexdigest()


def row_key(row: Mapping[str, object]) -> str:
    """Item.key: the sha256 of the row's columns but the price, as canonical JSON."""
    own = {name: value for name, value in row.items() if name != PRICE_COLUMN}
    text = json.dumps(own, sort_keys=True, ensure_ascii=False, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
