"""Rows checked into items: each row's prompt (its `text`, or a template filled from its columns), its price and
the label reports print; a DataError names the row and column at fault."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

from pricer.errors import DataError
from pricer.task.items import PRICE_COLUMN, Item, row_key
from pricer.task.prompts import PRICE_PREFIX, label_of, prompt_of, render, template_fields, title_of

# The course's data is $0.50-$999.49. A price past a million dollars is a unit or column mistake (cents, a part
# number, 1e12) that would swamp every mean error, so it is refused with its row rather than scored.
MAX_PRICE = 1_000_000.0
TITLE_COLUMN = "title"  # labels items in reports and baselines when the data has it, in the prompt or not


def template_columns(template: str) -> list[str]:
    """The columns a prompt template reads; DataError when it is malformed, names none or names the price."""
    try:
        fields = template_fields(template)
    except ValueError as exc:
        raise DataError(f"template {template!r}: {exc}") from None
    if not fields:
        raise DataError(f"template {template!r} names no column; put the product's columns in braces, "
                        "e.g. '{title}\\n{description}\\n\\nPrice is $'")
    if PRICE_COLUMN in fields:
        raise DataError(f"template {template!r} names the {PRICE_COLUMN!r} column: every prompt would hold its "
                        "answer; build prompts from the product's other columns")
    head, prefix, tail = template.rpartition(PRICE_PREFIX)
    after = template_fields(tail) if prefix else []
    if after:
        where = "every column it names" if set(after) == set(fields) else f"column {after[0]!r}"
        raise DataError(f"template {template!r} puts {where} after {PRICE_PREFIX!r}: the prompt ends there, where the "
                        "model writes the price, so it would be asked before the product is described; put the "
                        f"columns before it and end the template with {PRICE_PREFIX!r}")
    return fields


def items_from_rows(rows, *, where: str, template: str | None, fields: list[str] | None) -> list[Item]:
    columns = set(rows.column_names)
    if template:
        for column in fields:
            if column not in columns:
                raise DataError(f"{where}: the template names column {column!r}, "
                                f"but the columns are {', '.join(sorted(columns))}")
    for column in ["text"] * (not template) + ["price"]:
        if column not in columns:
            fix = "" if column != "text" else (  # prompts are then built from the other columns
                "; build each prompt from them with --template (pytest: --pricer-template), e.g. "
                "'How much does this cost?\\n\\n{description}\\n\\nPrice is $'")
            raise DataError(f"{where}: missing column {column!r}; the columns are {', '.join(sorted(columns))}{fix}")
    items: list[Item] = []
    first_row_of: dict[str, int] = {}
    for number, row in _numbered(rows, where=where):
        if template:
            prompt = _rendered(template, fields, row, where=where, row=number)
            title = _label(row, fields=fields, prompt=prompt)
            what = "columns " + ", ".join(repr(name) for name in dict.fromkeys(fields))
        else:
            prompt = _text_of(row, where=where, row=number)
            title = _label(row, fields=None, prompt=prompt)
            what = "column 'text'"
        if prompt in first_row_of:
            raise DataError(f"{where}: row {number}: {what}: duplicate of row {first_row_of[prompt]}")
        first_row_of[prompt] = number
        stored = _stored_json(rows, PRICE_COLUMN, number - 1) if row[PRICE_COLUMN] is None else None
        price = _price_of(row, where=where, row=number, stored=stored)
        items.append(Item(index=number, prompt=prompt, price=price, title=title, key=row_key(row)))
    return items


def _label(row: Mapping[str, object], *, fields: list[str] | None, prompt: str) -> str:
    """The item's label: its `title` column where the data has one; else the text of the first column the template
    reads (never the template's own words, which every item shares); else the prompt after the course's question."""
    for column in (TITLE_COLUMN, *(fields or ())):
        value = row.get(column)
        if value is not None and label_of(str(value)):
            return label_of(str(value))
    return title_of(prompt)


def _numbered(rows, *, where: str) -> Iterator[tuple[int, Mapping[str, object]]]:
    """(1-based row number, row); a row whose bytes are not UTF-8 (a parquet file's strings) is a DataError."""
    iterator = iter(rows)
    number = 0
    while True:
        number += 1
        try:
            row = next(iterator)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            raise DataError(f"{where}: row {number}: not UTF-8 text (byte {exc.object[exc.start]:#04x}); "
                            "save the data as UTF-8") from None
        yield number, row


def _rendered(template: str, fields: list[str], values: Mapping[str, object], *, where: str, row: int) -> str:
    for name in fields:
        if values[name] is None:
            raise DataError(f"{where}: row {row}: column {name!r} is missing")
    if not any(str(values[name]).strip() for name in fields):
        raise DataError(f"{where}: row {row}: columns {', '.join(repr(name) for name in dict.fromkeys(fields))} "
                        f"are all empty")
    try:
        return render(template, values)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:  # e.g. "{price:.2f}" on a string
        raise DataError(f"{where}: row {row}: template {template!r} cannot be filled ({type(exc).__name__}: {exc})") \
            from None


def _text_of(values: Mapping[str, object], *, where: str, row: int) -> str:
    text = values["text"]
    if text is None:
        raise DataError(f"{where}: row {row}: column 'text' is missing")
    if not isinstance(text, str):
        raise DataError(f"{where}: row {row}: column 'text': {text!r} is not a string")
    if not text.strip():
        raise DataError(f"{where}: row {row}: column 'text' is empty")
    if PRICE_PREFIX not in text:
        # Without it the prompt cannot be told from an answer the text may hold, and a model is not asked a price.
        raise DataError(f"{where}: row {row}: column 'text' does not contain {PRICE_PREFIX!r}: a prompt ends there "
                        "(anything after it is the answer and is cut off); or build prompts with --template")
    return prompt_of(text)


def _stored_json(rows, column: str, index: int) -> str | None:  # rows: datasets.Dataset
    """The JSON text `datasets` keeps for a row of a column of mixed types (numbers and text), where it decodes the
    text "NaN" to None as if the value were missing; None for other columns or a real null."""
    if type(rows.features.get(column)).__name__ != "Json":
        return None
    stored = rows.with_format("arrow")[index].column(column)[0].as_py()
    return stored if isinstance(stored, str) else None


def _price_of(values: Mapping[str, object], *, where: str, row: int, stored: str | None = None) -> float:
    raw = values["price"]
    if raw is None and stored is not None:
        raise DataError(f"{where}: row {row}: column 'price': {stored!r} is not a positive number")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise DataError(f"{where}: row {row}: column 'price' is missing")
    if isinstance(raw, bool):
        raise DataError(f"{where}: row {row}: column 'price': {raw!r} is not a number")
    try:
        price = float(raw)  # numbers, and numbers stored as text in a CSV
    except (TypeError, ValueError):
        raise DataError(f"{where}: row {row}: column 'price': {raw!r} is not a number") from None
    if math.isinf(price):
        raise DataError(f"{where}: row {row}: column 'price': {raw!r} is not a finite number")
    if not price > 0:  # also catches NaN
        raise DataError(f"{where}: row {row}: column 'price': {raw!r} is not a positive number")
    if price > MAX_PRICE:
        raise DataError(f"{where}: row {row}: column 'price': {raw!r} is above ${MAX_PRICE:,.0f}, the most pricer "
                        "accepts; a unit or column mistake (cents, a part number) would swamp every mean error")
    return price
