"""Load product rows (text, price) from a Hugging Face dataset or a local file, and validate each row."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pricer.errors import DataError, OptionError
from pricer.task.prompts import PRICE_PREFIX, label_of, prompt_of, render, template_fields, title_of

DEFAULT_DATASET = "ed-donner/pricer-data"
DEFAULT_SPLIT = "test"
DEFAULT_N = 250  # the course's Tester scores the first 250 test items
DATA_ENV = "PRICER_DATA"
LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
OFFLINE_ENVS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
# The course's data is $0.50-$999.49. A price past a million dollars is a unit or column mistake (cents, a part
# number, 1e12) that would swamp every mean error, so it is refused with its row rather than scored.
MAX_PRICE = 1_000_000.0
PRICE_COLUMN = "price"  # the answer: never part of a prompt
TITLE_COLUMN = "title"  # labels items in reports and baselines when the data has it, in the prompt or not
TEXT_FORMATS = (".jsonl", ".json", ".csv")  # read as text, so checked for UTF-8 first
LOCAL_HINT = (
    "To use local data, point pricer at a dataset folder or a .jsonl/.csv/.parquet file with "
    f"--data PATH, the pytest option --pricer-data PATH or the environment variable {DATA_ENV}=PATH"
)


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


def load_items(spec: DataSpec) -> list[Item]:
    """The first `spec.n` valid items of the split, in order; raises DataError naming what is wrong."""
    if spec.n is not None and spec.n < 1:
        raise DataError(f"n must be at least 1, got {spec.n}")
    fields = template_columns(spec.template) if spec.template else None
    rows, where = _read_rows(spec.source, spec.split)
    if spec.n is not None:
        if len(rows) < spec.n:
            raise DataError(f"{where}: has {len(rows)} rows, fewer than the {spec.n} asked for")
        rows = rows.select(range(spec.n))
    elif len(rows) == 0:
        raise DataError(f"{where}: has no rows")
    return _items_from_rows(rows, where=where, template=spec.template, fields=fields)


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
    return fields


def _read_rows(source: str, split: str):  # -> tuple[datasets.Dataset, str]
    path = Path(source).expanduser()
    suffix = path.suffix.lower()
    if path.is_file():
        if suffix not in LOCAL_FORMATS:
            raise DataError(f"{path}: unsupported file type {path.suffix!r}; use a dataset folder or a "
                            f"{', '.join(LOCAL_FORMATS)} file")
        return _read_file(path), str(path)
    if path.is_dir():
        return _read_folder(path, split)
    if path.exists():
        raise DataError(f"{path}: not a file or a folder")
    # A hub id is "name" or "owner/name"; anything else that does not exist is a mistyped path.
    if suffix in LOCAL_FORMATS or source.startswith((".", "/", "~")) or source.count("/") > 1 or "\\" in source:
        raise DataError(f"{source}: no such file or folder")
    return _read_hub(source, split)


def _read_file(path: Path):  # -> datasets.Dataset
    import datasets

    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    if path.suffix.lower() in TEXT_FORMATS:
        _check_utf8(path)  # pyarrow reads other bytes without complaint and fails later, row by row
    fmt = LOCAL_FORMATS[path.suffix.lower()]
    try:
        with _quiet():
            # A single file is one split, which `datasets` calls "train": the whole file.
            rows = datasets.load_dataset(fmt, data_files=str(path), split="train")
    except Exception as exc:  # the readers raise many kinds (ArrowInvalid, ParserError, DatasetGenerationError...)
        raise _unreadable([path], exc) from None
    if fmt == "json" and rows.num_rows == 1 and PRICE_COLUMN not in rows.column_names:
        _refuse_wrapped_rows(path)
    return rows


def _refuse_wrapped_rows(file: Path) -> None:
    """DataError for a JSON file that is one object holding the rows ({"rows": [...]}): `datasets` reads it as a
    single row, which would be reported as too few rows or a missing column."""
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(value, dict):
        return
    # A list of objects under a key is the rows; one row of plain columns is a row, reported as such later.
    held = [key for key, inner in value.items() if isinstance(inner, list) and inner and isinstance(inner[0], dict)]
    if held:
        raise DataError(f"{file}: a JSON object (keys {', '.join(map(repr, value))}), not rows; its rows seem to be "
                        f"under {held[0]!r}: write the rows as a JSON list [{{...}}, ...] or one object per line "
                        "(JSON Lines)")


def _refuse_odd_split_file(path: Path, split: str) -> None:
    """A split's file that is not a regular file (a dangling link, a folder, a FIFO) is named as what it is: passed
    over, the split would seem missing ("unknown split"), and a FIFO is never opened, which would block."""
    from pricer.files import kind

    for candidate in sorted(path.glob(f"{glob.escape(split)}.*")):
        if candidate.suffix.lower() in LOCAL_FORMATS and not candidate.is_file():
            raise DataError(f"{candidate}: {kind(candidate)}, not a data file; the {split!r} split is read from a "
                            "regular file of rows")


def _read_folder(path: Path, split: str):  # -> tuple[datasets.Dataset, str]
    import datasets

    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        return _read_saved(path, split)
    data_files = sorted(p for p in path.rglob("*") if p.suffix.lower() in LOCAL_FORMATS and p.is_file()
                        and not any(part.startswith(".") for part in p.relative_to(path).parts))
    _refuse_odd_split_file(path, split)
    if not data_files:
        raise DataError(f"{path}: not a dataset folder: it holds no {', '.join(LOCAL_FORMATS)} files")
    try:
        with _quiet():
            builder = datasets.load_dataset_builder(str(path))
    except Exception as exc:
        raise _unreadable(data_files, exc) from None
    files = {str(name): list(found) for name, found in (builder.config.data_files or {}).items()}
    if split not in files:
        raise DataError(f"{path}: unknown split {split!r}; it has {', '.join(sorted(files)) or 'none'}")
    split_files = [Path(str(found)) for found in files[split]]
    _refuse_twins(path, split, split_files, data_files)
    # Each file on its own, as a single file is read: preparing the whole folder makes one schema for every
    # split, so a string price in one file became "Couldn't cast" with no row, and a dict in a text column was
    # cast to its JSON text. Other splits' files are not read at all.
    rows = _concatenated([_read_file(found) for found in split_files], split_files)
    # Rows are numbered within the split; with one file per split that is the file's row.
    where = str(split_files[0]) if len(split_files) == 1 else f"{path} (split {split!r})"
    return rows, where


def _refuse_twins(folder: Path, split: str, split_files: Sequence[Path], data_files: Sequence[Path]) -> None:
    """DataError when a split's file has a twin in another format (test.jsonl and test.csv): `datasets` reads the
    folder's commonest format and silently ignores the other file."""
    by_stem: dict[Path, list[Path]] = {}
    for file in data_files:
        by_stem.setdefault(file.resolve().with_suffix(""), []).append(file)
    for found in split_files:
        twins = by_stem.get(found.resolve().with_suffix(""), [])
        if len(twins) > 1:
            names = " and ".join(str(twin.relative_to(folder)) for twin in twins)
            raise DataError(f"{folder}: {names} both hold split {split!r}; pricer would read only one of them: remove "
                            "or rename the other")


def _concatenated(parts: Sequence, files: Sequence[Path]):  # -> datasets.Dataset
    """One split from its files, which must have the same columns and types."""
    import datasets

    if len(parts) == 1:
        return parts[0]
    for part, file in zip(parts[1:], files[1:]):
        if part.features != parts[0].features:
            mine, first = dict(part.features), dict(parts[0].features)
            differing = sorted(name for name in {*mine, *first} if mine.get(name) != first.get(name))
            raise DataError(f"{file}: column {differing[0]!r} differs from {files[0]}'s ("
                            f"{_kind(mine.get(differing[0]))} against {_kind(first.get(differing[0]))}); "
                            "the files of one split need the same columns and types")
    return datasets.concatenate_datasets(list(parts))


def _kind(feature: object) -> str:
    return "absent" if feature is None else str(getattr(feature, "dtype", type(feature).__name__))


def _check_utf8(file: Path) -> None:
    """DataError naming line, column and byte of a text file that is not UTF-8 (a Latin-1 or UTF-16 export)."""
    data = file.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        utf16 = "; it starts with a UTF-16 byte-order mark" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise DataError(f"{file}:{line}:{column}: not UTF-8 text (byte 0x{data[exc.start]:02x}{utf16}); "
                        "save the file as UTF-8") from None


def _read_saved(path: Path, split: str):  # -> tuple[datasets.Dataset, str]
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise _unreadable([path], exc) from None
    if isinstance(loaded, datasets.Dataset):
        return loaded, str(path)  # saved as one split, like a single file
    if split not in loaded:
        raise DataError(f"{path}: unknown split {split!r}; it has {', '.join(sorted(loaded))}")
    return loaded[split], f"{path} (split {split!r})"


def _read_hub(source: str, split: str):  # -> tuple[datasets.Dataset, str]
    import datasets

    offline = _offline()
    try:
        with _quiet(), _offline_now(offline):
            loaded = datasets.load_dataset(source)
    except Exception as exc:  # the hub client raises many kinds
        if offline:
            reason = "offline mode is on and it is not in the local cache"
        else:
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise DataError(f"{source}: no such file or folder here, and the Hugging Face hub cannot give that "
                        f"dataset ({reason}). {LOCAL_HINT}") from None
    if split not in loaded:
        raise DataError(f"{source}: unknown split {split!r}; it has {', '.join(sorted(loaded))}")
    return loaded[split], f"{source} (split {split!r})"


def _offline() -> bool:
    import datasets

    switched = any(os.environ.get(name, "").upper() in {"1", "ON", "YES", "TRUE"} for name in OFFLINE_ENVS)
    return switched or bool(datasets.config.HF_HUB_OFFLINE)


@contextlib.contextmanager
def _offline_now(offline: bool) -> Iterator[None]:
    """Honour the offline switches as they are now, not as they were when `datasets` was imported."""
    if not offline:
        yield
        return
    # datasets and huggingface_hub read HF_HUB_OFFLINE once, at import; set after that (a test's
    # monkeypatch, a notebook cell) it is ignored and the hub client retries for ~25 s before failing.
    import datasets
    import huggingface_hub.constants

    saved = datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE = saved


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No progress bars or log lines from datasets: pricer reports its own errors, and restores the settings."""
    import datasets

    loggers = [logging.getLogger(name) for name in ("datasets", "huggingface_hub")]
    levels = [logger.level for logger in loggers]
    bars_were_off = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)  # "Repo card metadata block was not found" is noise for a local folder
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        if not bars_were_off:
            datasets.enable_progress_bars()


def _unreadable(files: Sequence[Path], exc: BaseException) -> DataError:
    """The clearest error for files `datasets` could not read: a bad JSON line by number, else the root cause."""
    for file in files:
        if file.suffix.lower() in (".jsonl", ".json", ".csv") and file.is_file() and _has_no_rows(file):
            return DataError(f"{file}: has no rows")  # datasets says 'Instruction "train" corresponds to no data!'
        if file.suffix.lower() in (".jsonl", ".json") and file.is_file():
            bad_line = _bad_json_line(file)
            if bad_line:
                return DataError(bad_line)
    root = exc
    while root.__cause__ is not None or root.__context__ is not None:
        root = root.__cause__ or root.__context__
    place = str(files[0]) if len(files) == 1 else ", ".join(str(file) for file in files)
    detail = str(root).strip().splitlines()[0] if str(root).strip() else "no detail"
    return DataError(f"{place}: cannot be read as product data ({type(root).__name__}: {detail})")


def _has_no_rows(file: Path) -> bool:
    """A text file of blank lines, or a CSV of only its header."""
    with file.open(encoding="utf-8", errors="replace") as handle:
        lines = sum(1 for line in handle if line.strip())
    return lines <= (1 if file.suffix.lower() == ".csv" else 0)


def _bad_json_line(file: Path) -> str | None:
    """`path:line: why` for the first line of a JSON Lines file that is not a JSON object, else None."""
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return f"{file}: not UTF-8 text (byte {exc.start})"
    except OSError as exc:
        return f"{file}: cannot be read ({exc.strerror})"
    lines = text.splitlines()
    last = max((number for number, line in enumerate(lines, 1) if line.strip()), default=0)
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == 1 and file.suffix.lower() == ".json":
                return _bad_json_document(file, text)
            cut = "; the file looks truncated" if number == last and not text.endswith("\n") else ""
            return f"{file}:{number}:{exc.colno}: not valid JSON ({exc.msg}){cut}"
        if not isinstance(value, dict) and file.suffix.lower() == ".jsonl":
            return f"{file}:{number}: a {type(value).__name__}, not a JSON object with 'text' and 'price'"
    return None


def _bad_json_document(file: Path, text: str) -> str | None:
    """`path:line: why` for a .json file holding one document (a list of rows) that does not parse."""
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return f"{file}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})"
    return None


def _items_from_rows(rows, *, where: str, template: str | None, fields: list[str] | None) -> list[Item]:
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
