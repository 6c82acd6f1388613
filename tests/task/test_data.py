"""Loading items (pricer.task.load): from files, folders and the hub, and the errors that name file, row and column."""

from __future__ import annotations

import json
import logging
import re
import socket
from pathlib import Path

import pytest

from pricer.errors import DataError
from pricer.task.items import DATA_ENV, DEFAULT_DATASET, DataSpec, Item, items_digest, resolve_source, row_key
from pricer.task.load import load_items
from pricer.task.prompts import COURSE_TEMPLATE, PRICE_PREFIX, QUESTION


def prompt(title: str, description: str = "A thing that does things.") -> str:
    return f"{QUESTION}\n\n{title}\n{description}\n\n{PRICE_PREFIX}"


def rows(count: int, *, start: int = 1) -> list[dict[str, object]]:
    return [{"text": prompt(f"Product {i}"), "price": float(i) + 0.99} for i in range(start, start + count)]


def write_jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def load(path: Path | str, **spec: object) -> list[Item]:
    return load_items(DataSpec(source=str(path), **{"n": None, **spec}))


def at(path: Path, row: int, column: str) -> str:
    """The start of a message naming file, row and column, as a regex."""
    return re.escape(f"{path}: row {row}: column '{column}'")


# Bad inputs: each names the file, and the row and column where there is one.


def test_negative_price_names_file_row_and_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "items.csv", "text,price\nfirst Price is $,1.50\nsecond Price is $,-3\n")
    with pytest.raises(DataError, match=at(path, 2, "price") + r": -3(\.0)? is not a positive number"):
        load(path)


def test_zero_price_names_file_row_and_column(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", [*rows(2), {"text": prompt("Free"), "price": 0}])
    with pytest.raises(DataError, match=at(path, 3, "price") + r": 0(\.0)? is not a positive number"):
        load(path)


def test_price_that_is_not_a_number_names_file_row_and_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "items.csv", "text,price\nfirst Price is $,1.50\nsecond Price is $,abc\n")
    with pytest.raises(DataError, match=at(path, 2, "price") + ": 'abc' is not a number"):
        load(path)


def test_price_with_dollar_sign_is_not_a_number(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", [{"text": prompt("Lamp"), "price": "$12.99"}])
    with pytest.raises(DataError, match=at(path, 1, "price") + r": '\$12.99' is not a number"):
        load(path)


def test_empty_price_cell_is_missing(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "items.csv", "text,price\nfirst Price is $,1.50\nsecond Price is $,\n")
    with pytest.raises(DataError, match=at(path, 2, "price") + " is missing"):
        load(path)


def test_null_price_is_missing(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", [*rows(1), {"text": prompt("Lamp"), "price": None}])
    with pytest.raises(DataError, match=at(path, 2, "price") + " is missing"):
        load(path)


def test_nan_price_names_file_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text('{"text": "first Price is $", "price": 1.5}\n{"text": "second Price is $", "price": NaN}\n')
    with pytest.raises(DataError, match=at(path, 2, "price") + ": nan is not a positive number"):
        load(path)


def test_infinite_price_names_file_row_and_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "items.csv",
                     "text,price\nfirst Price is $,1.50\nsecond Price is $,1.50\nthird Price is $,inf\n")
    with pytest.raises(DataError, match=at(path, 3, "price") + ": inf is not a finite number"):
        load(path)


def test_empty_text_names_file_row_and_column(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", [*rows(1), {"text": "   ", "price": 5.0}])
    with pytest.raises(DataError, match=at(path, 2, "text") + " is empty"):
        load(path)


def test_null_text_is_missing(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", [*rows(2), {"text": None, "price": 5.0}])
    with pytest.raises(DataError, match=at(path, 3, "text") + " is missing"):
        load(path)


def test_missing_price_column_names_file_and_column(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", [{"text": prompt("Lamp"), "cost": 5.0}])
    with pytest.raises(DataError, match=re.escape(f"{path}: missing column 'price'; the columns are cost, text")):
        load(path)


def test_missing_text_column_names_file_and_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "items.csv", "title,price\nLamp,5\n")
    with pytest.raises(DataError, match=re.escape(f"{path}: missing column 'text'")):
        load(path)


def test_missing_text_column_points_to_the_template_option(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "items.csv", "description,price\nLamp,5\n")
    with pytest.raises(DataError, match=re.escape("columns are description, price; build each prompt from them "
                                                  "with --template (pytest: --pricer-template)")):
        load(path)


def test_duplicate_item_names_both_rows(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", [*rows(3), {"text": prompt("Product 2"), "price": 7.0}])
    with pytest.raises(DataError, match=at(path, 4, "text") + ": duplicate of row 2"):
        load(path)


def test_fewer_rows_than_asked_names_file_and_counts(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", rows(3))
    with pytest.raises(DataError, match=re.escape(f"{path}: has 3 rows, fewer than the 250 asked for")):
        load(path, n=250)


def test_n_below_one_is_refused(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", rows(3))
    with pytest.raises(DataError, match="n must be at least 1, got 0"):
        load(path, n=0)


def test_truncated_jsonl_names_file_and_line(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", rows(2))
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"text": "How much does this cost", "pri')  # the last line cut in half
    with pytest.raises(DataError, match=re.escape(f"{path}:3:") + r"\d+: not valid JSON .*truncated"):
        load(path)


def test_truncated_split_file_in_a_folder_names_that_file_and_line(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", rows(3))
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps(rows(1)[0]) + "\n" + '{"text": "Lamp"')
    with pytest.raises(DataError, match=re.escape(f"{path}:2:")):
        load(tmp_path)


def test_json_document_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "items.json"
    path.write_text('[{"text": "Lamp", "price": 5},\n {"text": "Chair" "price": 6}]\n')
    with pytest.raises(DataError, match=re.escape(f"{path}:2:") + r"\d+: not valid JSON"):
        load(path)


def test_jsonl_line_that_is_not_an_object_names_file_and_line(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", rows(1))
    with path.open("a", encoding="utf-8") as handle:
        handle.write('["Lamp", 5.0]\n')
    with pytest.raises(DataError, match=re.escape(f"{path}:2: a list, not a JSON object")):
        load(path)


def test_truncated_parquet_names_file(tmp_path: Path) -> None:
    import pandas as pd

    whole = tmp_path / "whole.parquet"
    pd.DataFrame(rows(5)).to_parquet(whole)
    path = tmp_path / "items.parquet"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(DataError, match=re.escape(f"{path}: cannot be read as product data")):
        load(path)


def test_malformed_csv_names_file_and_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "items.csv", "text,price\nfirst,1.50\nsecond,2.50,extra\n")
    with pytest.raises(DataError, match=re.escape(f"{path}: cannot be read as product data") + ".*line 3"):
        load(path)


def test_empty_file_is_named(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "items.csv", "")
    with pytest.raises(DataError, match=re.escape(f"{path}: file is empty")):
        load(path)


def test_header_only_csv_has_no_rows(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "items.csv", "text,price\n")
    with pytest.raises(DataError, match=re.escape(f"{path}: has no rows")):
        load(path)


def test_unknown_split_lists_the_splits_there_are(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", rows(2))
    write_jsonl(tmp_path / "test.jsonl", rows(2, start=10))
    with pytest.raises(DataError, match=re.escape(f"{tmp_path}: unknown split 'validation'; it has test, train")):
        load(tmp_path, split="validation")


def test_template_naming_an_absent_column_names_it_and_the_columns(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", [{"title": "Lamp", "details": "Bright.", "price": 5.0}])
    with pytest.raises(DataError, match=re.escape(f"{path}: the template names column 'description', "
                                                  "but the columns are details, price, title")):
        load(path, template=COURSE_TEMPLATE)


def test_malformed_template_is_quoted(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", [{"title": "Lamp", "price": 5.0}])
    with pytest.raises(DataError, match=re.escape("template '{title'")):
        load(path, template="{title")


def test_template_column_without_a_value_names_row_and_column(tmp_path: Path) -> None:
    records = [{"title": "Lamp", "description": "Bright.", "price": 5.0},
               {"title": None, "description": "Dim.", "price": 6.0}]
    path = write_jsonl(tmp_path / "items.jsonl", records)
    with pytest.raises(DataError, match=at(path, 2, "title") + " is missing"):
        load(path, template=COURSE_TEMPLATE)


def test_path_that_does_not_exist_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.jsonl"
    with pytest.raises(DataError, match=re.escape(f"{path}: no such file or folder")):
        load(path)


def test_mistyped_folder_is_not_sent_to_the_hub(tmp_path: Path) -> None:
    path = tmp_path / "data" / "pricer"
    with pytest.raises(DataError, match=re.escape(f"{path}: no such file or folder")):
        load(path)


def test_folder_without_data_files_is_not_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not data\n")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path}: not a dataset folder: it holds no .jsonl")):
        load(tmp_path)


def test_unsupported_suffix_is_named(tmp_path: Path) -> None:
    path = tmp_path / "items.txt"
    path.write_text("Lamp 5.00\n")
    with pytest.raises(DataError, match=re.escape(f"{path}: unsupported file type '.txt'; use a dataset folder or")):
        load(path)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record, and refuse, every attempt to resolve a host or open a connection."""
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def test_offline_without_local_data_says_how_to_point_at_it(monkeypatch: pytest.MonkeyPatch,
                                                            no_network: list[object]) -> None:
    # Imported first, as in any session that loaded data before: datasets then reads these switches too late.
    import datasets  # noqa: F401

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # An id no cache holds: the course's own dataset may be cached on a developer's machine.
    with pytest.raises(DataError) as caught:
        load_items(DataSpec(source="pricer-tests/never-published"))
    message = str(caught.value)
    assert message.startswith("pricer-tests/never-published: no such file or folder here")
    assert "offline mode is on" in message
    assert f"{DATA_ENV}=PATH" in message and "--data PATH" in message
    assert "\n" not in message and "Traceback" not in message
    assert no_network == []


# Good paths.


def test_jsonl_gives_items_with_prompt_price_and_title(tmp_path: Path) -> None:
    written = rows(3)
    path = write_jsonl(tmp_path / "items.jsonl", written)
    items = load(path)
    assert items[0] == Item(index=1, prompt=prompt("Product 1"), price=1.99, title="Product 1",
                            key=row_key(written[0]))
    assert [item.price for item in items] == [1.99, 2.99, 3.99]


def test_csv_with_prices_as_text_loads(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "items.csv", 'text,price\n"Lamp, bright. Price is $",5\n"Chair. Price is $",12.50\n')
    items = load(path)
    assert [(item.prompt, item.price) for item in items] == [("Lamp, bright. Price is $", 5.0),
                                                             ("Chair. Price is $", 12.5)]


def test_parquet_written_by_pandas_loads(tmp_path: Path) -> None:
    import pandas as pd

    path = tmp_path / "items.parquet"
    pd.DataFrame(rows(4)).to_parquet(path)
    assert [item.title for item in load(path)] == ["Product 1", "Product 2", "Product 3", "Product 4"]


def test_folder_split_selects_its_file(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", rows(3, start=100))
    write_jsonl(tmp_path / "test.jsonl", rows(2))
    assert [item.price for item in load(tmp_path)] == [1.99, 2.99]  # the default split is test
    assert [item.price for item in load(tmp_path, split="train")] == [100.99, 101.99, 102.99]


def test_errors_in_a_folder_name_the_split_file(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", rows(3))
    path = write_jsonl(tmp_path / "test.jsonl", [*rows(1), {"text": prompt("Lamp"), "price": -1}])
    with pytest.raises(DataError, match=at(path, 2, "price")):
        load(tmp_path)


def test_first_n_items_in_order(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", rows(10))
    items = load(path, n=4)
    assert [item.index for item in items] == [1, 2, 3, 4]
    assert [item.title for item in items] == ["Product 1", "Product 2", "Product 3", "Product 4"]


def test_rows_after_the_first_n_are_not_validated(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", [*rows(2), {"text": prompt("Broken"), "price": -1}])
    assert len(load(path, n=2)) == 2


def test_training_text_loses_its_answer(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", [{"text": prompt("Goop") + "21.00", "price": 20.95}])
    (item,) = load(path)
    assert item.prompt == prompt("Goop") and item.prompt.endswith(PRICE_PREFIX)
    assert item.price == 20.95


USER_TEMPLATE = ("How much does this cost to the nearest dollar? Answer with the price only.\n\n{description}\n\n"
                 + PRICE_PREFIX)


def test_items_are_labelled_by_their_own_text_not_by_the_template_words(tmp_path: Path) -> None:
    records = [{"description": "Brass desk lamp\nWarm light.", "price": 5.0},
               {"description": "Oak stool", "price": 9.0}]
    items = load(write_jsonl(tmp_path / "items.jsonl", records), template=USER_TEMPLATE)
    assert [item.title for item in items] == ["Brass desk lamp", "Oak stool"]


def test_items_are_labelled_by_a_title_column_the_template_does_not_read(tmp_path: Path) -> None:
    records = [{"title": "Lamp", "description": "Warm light.", "price": 5.0}]
    (item,) = load(write_jsonl(tmp_path / "items.jsonl", records), template=USER_TEMPLATE)
    assert item.title == "Lamp" and "Lamp" not in item.prompt


def test_template_renders_title_and_description_columns(tmp_path: Path) -> None:
    long_title = "Motorcraft YB3125 Fan Clutch for Ford Trucks and Vans"
    records = [{"title": f"  {long_title} ", "description": "Cools the engine.", "price": 89.5, "sku": "A1"}]
    path = write_jsonl(tmp_path / "items.jsonl", records)
    (item,) = load(path, template=COURSE_TEMPLATE)
    assert item.prompt == f"{QUESTION}\n\n{long_title}\nCools the engine.\n\n{PRICE_PREFIX}"
    assert item.title == long_title[:40] + "..."
    assert item.price == 89.5


def test_dataset_saved_with_save_to_disk_loads(tmp_path: Path) -> None:
    import datasets

    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows(2))}).save_to_disk(str(tmp_path / "saved"))
    assert [item.price for item in load(tmp_path / "saved")] == [1.99, 2.99]


def test_loading_leaves_logging_as_it_was(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", rows(1))
    before = logging.getLogger("datasets").level
    load(path)
    assert logging.getLogger("datasets").level == before


def test_resolve_source_reads_the_environment_and_an_explicit_value_wins(monkeypatch: pytest.MonkeyPatch,
                                                                         tmp_path: Path) -> None:
    monkeypatch.delenv(DATA_ENV, raising=False)
    assert resolve_source(None) == DEFAULT_DATASET
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert resolve_source(None) == str(tmp_path)
    assert resolve_source("elsewhere.jsonl") == "elsewhere.jsonl"


def test_items_digest_changes_when_one_price_changes(tmp_path: Path) -> None:
    records = rows(5)
    first = load(write_jsonl(tmp_path / "a.jsonl", records))
    records[3] = {**records[3], "price": 4.98}
    second = load(write_jsonl(tmp_path / "b.jsonl", records))
    assert items_digest(first) == items_digest(load(write_jsonl(tmp_path / "c.jsonl", rows(5))))
    assert items_digest(first) != items_digest(second)


# The real data, where the environment points at it (data_dir in conftest.py).


def test_real_test_split_has_the_course_items(data_dir: Path) -> None:
    items = load_items(DataSpec(source=str(data_dir)))
    assert len(items) == 250
    assert items[0].index == 1 and items[0].price == 374.41
    assert items[0].title.startswith("OEM AC Compressor")
    assert all(item.prompt.endswith(PRICE_PREFIX) for item in items)


def test_real_train_split_prompts_end_without_the_answer(data_dir: Path) -> None:
    items = load_items(DataSpec(source=str(data_dir), split="train", n=None))
    assert len(items) == 998
    assert all(item.prompt.endswith(PRICE_PREFIX) for item in items)


# Inputs that once gave a traceback, a silent pass or an error naming the wrong cause.


def folder_with_test_split(tmp_path: Path, test_text: str) -> Path:
    """A dataset folder whose test.jsonl holds `test_text` as is, beside a good train split."""
    write_jsonl(tmp_path / "train.jsonl", rows(3, start=50))
    (tmp_path / "test.jsonl").write_text(test_text, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("encoded, byte", [("caf\xe9".encode("latin-1"), "0xe9"), (b"\xff\xfe", "0xff")])
def test_file_that_is_not_utf8_names_file_line_and_byte(tmp_path: Path, encoded: bytes, byte: str) -> None:
    path = tmp_path / "items.jsonl"
    path.write_bytes(json.dumps(rows(1)[0]).encode() + b"\n" + b'{"text": "' + encoded + b' Price is $", "price": 3}\n')
    with pytest.raises(DataError, match=re.escape(f"{path}:2:") + r"\d+: not UTF-8 text \(byte " + byte):
        load(path)


def test_csv_that_is_not_utf8_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_bytes(b"text,price\ncaf\xe9 Price is $,3\n")
    with pytest.raises(DataError, match=re.escape(f"{path}:2:4: not UTF-8 text (byte 0xe9)")):
        load(path)


def test_split_file_that_is_not_utf8_in_a_folder_is_named(tmp_path: Path) -> None:
    folder_with_test_split(tmp_path, "")
    path = tmp_path / "test.jsonl"
    path.write_bytes(b'{"text": "caf\xe9 Price is $", "price": 3}\n')
    with pytest.raises(DataError, match=re.escape(f"{path}:1:") + r"\d+: not UTF-8 text"):
        load(tmp_path)


@pytest.mark.parametrize("bad, shown", [('"abc"', "'abc' is not a number"), ("true", "True is not a number"),
                                        ('"$12.50"', r"'\$12.50' is not a number")])
def test_bad_price_in_a_folder_names_file_row_and_column(tmp_path: Path, bad: str, shown: str) -> None:
    good = "".join(json.dumps(row) + "\n" for row in rows(3))
    folder_with_test_split(tmp_path, good + '{"text": "Lamp\\n\\nPrice is $", "price": ' + bad + "}\n")
    with pytest.raises(DataError, match=at(tmp_path / "test.jsonl", 4, "price") + ": " + shown):
        load(tmp_path)


def test_column_typed_differently_in_another_split_does_not_break_this_one(tmp_path: Path) -> None:
    # test has a column train lacks, and prices as text: once "CastError: Couldn't cast", naming no column.
    write_jsonl(tmp_path / "train.jsonl", rows(2, start=50))
    write_jsonl(tmp_path / "test.jsonl", [{**row, "price": str(row["price"]), "title": "x"} for row in rows(2)])
    assert [item.price for item in load(tmp_path)] == [1.99, 2.99]


def test_split_files_with_different_column_types_name_the_file_and_column(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data" / "test-00000-of-00002.jsonl", rows(2))
    path = write_jsonl(tmp_path / "data" / "test-00001-of-00002.jsonl",
                       [{**row, "price": str(row["price"])} for row in rows(2, start=10)])
    with pytest.raises(DataError, match=re.escape(f"{path}: column 'price' differs from ")):
        load(tmp_path)


def test_text_without_the_price_prefix_names_file_row_and_column(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", [*rows(1), {"text": "A lamp. How much?", "price": 5.0}])
    with pytest.raises(DataError, match=at(path, 2, "text") + r" does not contain 'Price is \$'"):
        load(path)


def test_absurd_price_names_file_row_and_the_bound(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", [*rows(1), {"text": prompt("Lamp"), "price": 1e12}])
    with pytest.raises(DataError, match=at(path, 2, "price") + r": 1000000000000.0 is above \$1,000,000"):
        load(path)


def test_template_naming_the_price_column_is_refused(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", [{"description": "Lamp", "price": 5.0}])
    with pytest.raises(DataError, match=r"names the 'price' column: every prompt would hold its answer"):
        load(path, template="{description} Price is ${price}")


def test_template_reading_an_attribute_names_the_field_not_duplicate_rows(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", [{"description": f"Lamp {i}", "price": 5.0} for i in range(3)])
    with pytest.raises(DataError, match=re.escape("field {description.upper} reads an attribute or index of "
                                                  "column 'description'")):
        load(path, template="Item {description.upper} Price is $")


def test_template_without_a_column_says_so(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", [{"description": "Lamp", "price": 5.0}])
    with pytest.raises(DataError, match=re.escape("template 'Price is $' names no column")):
        load(path, template="Price is $")
