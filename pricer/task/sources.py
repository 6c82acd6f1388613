"""Product rows read from where they live: a local file, a folder of split files, a saved dataset or the Hugging
Face hub (offline switches honoured), quietly, with errors that name the file."""

from __future__ import annotations

import contextlib
import glob
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from pricer.errors import DataError
from pricer.files import kind
from pricer.task.file_errors import check_utf8, refuse_wrapped_rows, unreadable
from pricer.task.items import DATA_ENV, PRICE_COLUMN

LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
OFFLINE_ENVS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
TEXT_FORMATS = (".jsonl", ".json", ".csv")  # read as text, so checked for UTF-8 first
LOCAL_HINT = (
    "To use local data, point pricer at a dataset folder or a .jsonl/.csv/.parquet file with "
    f"--data PATH, the pytest option --pricer-data PATH or the environment variable {DATA_ENV}=PATH"
)


def read_rows(source: str, split: str):  # -> tuple[datasets.Dataset, str]
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
    if (what := kind(path)) != "missing":  # a link that leads nowhere (a loop, a file gone), not a hub dataset's id
        raise DataError(f"{path}: {what}, so no data is there")
    # A hub id is "name" or "owner/name"; anything else that does not exist is a mistyped path.
    if suffix in LOCAL_FORMATS or source.startswith((".", "/", "~")) or source.count("/") > 1 or "\\" in source:
        raise DataError(f"{source}: no such file or folder")
    return _read_hub(source, split)


def _read_file(path: Path):  # -> datasets.Dataset
    import datasets

    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    if path.suffix.lower() in TEXT_FORMATS:
        check_utf8(path)  # pyarrow reads other bytes without complaint and fails later, row by row
    fmt = LOCAL_FORMATS[path.suffix.lower()]
    try:
        with _quiet():
            # A single file is one split, which `datasets` calls "train": the whole file.
            rows = datasets.load_dataset(fmt, data_files=str(path), split="train")
    except Exception as exc:  # the readers raise many kinds (ArrowInvalid, ParserError, DatasetGenerationError...)
        raise unreadable([path], exc) from None
    if fmt == "json" and rows.num_rows == 1 and PRICE_COLUMN not in rows.column_names:
        refuse_wrapped_rows(path)
    return rows



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
        raise unreadable(data_files, exc) from None
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



def _read_saved(path: Path, split: str):  # -> tuple[datasets.Dataset, str]
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise unreadable([path], exc) from None
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
