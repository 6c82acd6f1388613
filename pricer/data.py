"""Load product rows (text, price) from a Hugging Face dataset or a local file, and validate each row."""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pricer.errors import DataError
from pricer.prompts import prompt_of, render, template_fields, title_of

DEFAULT_DATASET = "ed-donner/pricer-data"
DEFAULT_SPLIT = "test"
DEFAULT_N = 250  # the course's Tester scores the first 250 test items
DATA_ENV = "PRICER_DATA"
LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    """One product: the prompt a model completes, its true price and the title the report prints."""

    index: int  # 1-based position in the source split, as the course numbers items
    prompt: str
    price: float
    title: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DataSpec:
    """Where items come from; everything that decides which items a run sees."""

    source: str = DEFAULT_DATASET
    split: str = DEFAULT_SPLIT
    n: int | None = DEFAULT_N
    template: str | None = None  # None: the rows' `text` column already holds the prompt


def resolve_source(explicit: str | None) -> str:
    """The data source: an explicit option wins, then $PRICER_DATA, then the course's hub dataset."""
    return explicit or os.environ.get(DATA_ENV) or DEFAULT_DATASET


def load_items(spec: DataSpec) -> list[Item]:
    """The first `spec.n` valid items of the split, in order; raises DataError naming what is wrong."""
    rows, where = _read_rows(spec.source, spec.split)
    if spec.n is not None:
        if spec.n < 1:
            raise DataError(f"n must be at least 1, got {spec.n}")
        if len(rows) < spec.n:
            raise DataError(f"{where}: has {len(rows)} rows, fewer than the {spec.n} asked for")
        rows = rows.select(range(spec.n))
    return _items_from_rows(rows, where=where, template=spec.template)


def items_digest(items: Sequence[Item]) -> str:
    """A hash of exactly what a model sees and is scored against: prompts and prices, in order."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(item.prompt.encode("utf-8") + b"\0" + repr(item.price).encode() + b"\n")
    return digest.hexdigest()


def _read_rows(source: str, split: str):  # -> datasets.Dataset, str
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()  # a local folder without a dataset card is fine
    path = Path(source).expanduser()
    try:
        if path.is_dir():
            loaded = datasets.load_dataset(str(path))
        elif path.suffix.lower() in LOCAL_FORMATS:
            if not path.is_file():
                raise DataError(f"{path}: file not found")
            # A single file is one split: the whole file.
            return datasets.load_dataset(LOCAL_FORMATS[path.suffix.lower()], data_files=str(path), split="train"), str(path)
        elif path.exists() or source.startswith((".", "/", "~")) or path.suffix:
            raise DataError(
                f"{source}: not a dataset folder or a {', '.join(LOCAL_FORMATS)} file"
                if path.exists() else f"{source}: no such file or folder"
            )
        else:
            loaded = datasets.load_dataset(source)
    except DataError:
        raise
    except Exception as exc:  # the hub client and the file readers raise many kinds
        if path.exists():
            raise DataError(f"{path}: cannot be read as product data ({type(exc).__name__}: {exc})") from None
        raise DataError(
            f"cannot load the dataset {source!r} from the Hugging Face hub ({type(exc).__name__}). "
            f"To use local data, point pricer at a folder or a .jsonl/.csv/.parquet file with "
            f"--data PATH, the pytest option --pricer-data PATH or the environment variable {DATA_ENV}=PATH"
        ) from None
    if split not in loaded:
        raise DataError(f"{source}: unknown split {split!r}; it has {', '.join(sorted(loaded))}")
    return loaded[split], f"{source} (split {split!r})"


def _items_from_rows(rows, *, where: str, template: str | None) -> list[Item]:
    columns = set(rows.column_names)
    needed = ["price"] + (template_fields(template) if template else ["text"])
    for column in needed:
        if column not in columns:
            what = f"the template names column {column!r}" if template and column != "price" else f"missing column {column!r}"
            raise DataError(f"{where}: {what}, but the columns are {', '.join(sorted(columns))}")
    items: list[Item] = []
    first_row_of: dict[str, int] = {}
    for offset, row in enumerate(rows):
        number = offset + 1
        prompt = render(template, row) if template else _text_of(row, where=where, row=number)
        if not prompt.strip():
            raise DataError(f"{where}: row {number}: column 'text' is empty")
        if prompt in first_row_of:
            raise DataError(f"{where}: row {number}: duplicate of row {first_row_of[prompt]} (same text)")
        first_row_of[prompt] = number
        price = _price_of(row, where=where, row=number)
        items.append(Item(index=number, prompt=prompt, price=price, title=title_of(prompt)))
    return items


def _text_of(values: Mapping[str, object], *, where: str, row: int) -> str:
    text = values["text"]
    if not isinstance(text, str):
        raise DataError(f"{where}: row {row}: column 'text' is {text!r}, not a string")
    return prompt_of(text)


def _price_of(values: Mapping[str, object], *, where: str, row: int) -> float:
    raw = values["price"]
    if raw is None or isinstance(raw, bool):
        raise DataError(f"{where}: row {row}: column 'price' is missing")
    try:
        price = float(raw)  # numbers, and numbers stored as text in a CSV
    except (TypeError, ValueError):
        raise DataError(f"{where}: row {row}: column 'price': {raw!r} is not a number") from None
    if not math.isfinite(price) or price <= 0:
        raise DataError(f"{where}: row {row}: column 'price': {raw!r} is not a positive finite number")
    return price
