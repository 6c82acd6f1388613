"""load_items, the one way in: a DataSpec's rows read from its source, cut to its first n, then checked into
items."""

from __future__ import annotations

from pricer.errors import DataError
from pricer.task.items import DataSpec, Item
from pricer.task.rows import items_from_rows, template_columns
from pricer.task.sources import read_rows


def load_items(spec: DataSpec) -> list[Item]:
    """The first `spec.n` valid items of the split, in order; raises DataError naming what is wrong."""
    if spec.n is not None and spec.n < 1:
        raise DataError(f"n must be at least 1, got {spec.n}")
    fields = template_columns(spec.template) if spec.template else None
    rows, where = read_rows(spec.source, spec.split)
    if spec.n is not None:
        if len(rows) < spec.n:
            raise DataError(f"{where}: has {len(rows)} rows, fewer than the {spec.n} asked for")
        rows = rows.select(range(spec.n))
    elif len(rows) == 0:
        raise DataError(f"{where}: has no rows")
    return items_from_rows(rows, where=where, template=spec.template, fields=fields)
