"""pricer.task.prompts: the course's price parsing rule, titles, answers stripped and templates filled."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pricer.task.prompts import (COURSE_TEMPLATE, PRICE_PREFIX, QUESTION, parse_price, prompt_of, render,
                                 template_fields, title_of)


@pytest.mark.parametrize(
    ("completion", "price"),
    [
        ("$1,299.99", 1299.99),
        ("12.99 and 5", 12.99),
        ("abc", None),
        (".5", 0.5),
        ("", None),
        ("Price is $72.00", 72.0),
        (" 45", 45.0),
        ("about 1,000 dollars", 1000.0),
        ("1.2.3", 1.2),
        ("-5.5", None),  # the course's pattern keeps a sign before a decimal point, and no price is negative...
        ("-5", 5.0),  # ...but not before a whole number: its "[-+]?" binds to the first alternative only
    ],
)
def test_parse_price_takes_the_first_number_after_dropping_dollar_and_comma(completion: str,
                                                                              price: float | None) -> None:
    assert parse_price(completion) == price


# Trailing text that cannot extend the number: empty, or starting with a character that is no digit, ".", "$" or
# ",". Built, not filtered from any text: filtering whole strings rejected most of them, and hypothesis' too_slow
# health check failed on a busy machine ("only generated 2 valid inputs after 1.43 seconds").
_FIRST = st.characters().filter(lambda c: not (c.isdigit() or c in ".$,"))
_TAIL = st.one_of(st.just(""), st.tuples(_FIRST, st.text(max_size=19)).map("".join))


# Neither the time to generate inputs nor a deadline per example says anything about parse_price on a shared
# machine: both checks are off, so the test fails only on a wrong price.
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=st.floats(min_value=0, max_value=1e12, allow_nan=False), dollar=st.booleans(), tail=_TAIL)
def test_parse_price_reads_a_formatted_price_back(x: float, dollar: bool, tail: str) -> None:
    assert parse_price(("$" if dollar else "") + f"{x:,.2f}" + tail) == round(x, 2)


@given(text=st.text(alphabet=st.characters(exclude_categories=["Nd"])))
def test_parse_price_of_text_without_digits_is_none(text: str) -> None:
    assert parse_price(text) is None


@given(text=st.text())
def test_parse_price_never_raises(text: str) -> None:
    price = parse_price(text)
    assert price is None or isinstance(price, float)


def test_title_of_keeps_a_short_title() -> None:
    assert title_of(f"{QUESTION}\n\nLamp\nBright.\n\n{PRICE_PREFIX}") == "Lamp"


def test_title_of_cuts_to_40_characters_and_an_ellipsis() -> None:
    title = "OEM AC Compressor w/A/C Repair Kit For Ford F150 F-150 V8"
    assert title_of(f"{QUESTION}\n\n{title}\nA kit.\n\n{PRICE_PREFIX}") == title[:40] + "..."
    assert title_of("x" * 40) == "x" * 40


def test_title_of_a_prompt_that_is_only_the_question_does_not_raise() -> None:
    assert title_of(QUESTION) == ""


def test_prompt_of_strips_the_answer_after_the_prefix() -> None:
    body = f"{QUESTION}\n\nGoop\nGlue.\n\n{PRICE_PREFIX}"
    assert prompt_of(body + "21.00") == body
    assert prompt_of(body) == body
    assert prompt_of("no prefix here") == "no prefix here"


def test_template_fields_lists_each_column_once_in_order() -> None:
    assert template_fields(COURSE_TEMPLATE) == ["title", "description"]
    assert template_fields("{b} {a} {b} {c:>5}") == ["b", "a", "c"]


@pytest.mark.parametrize("template", ["Item {description.upper} Price is $", "{title[0]} Price is $"])
def test_template_fields_refuses_an_attribute_or_index_of_a_column(template: str) -> None:
    with pytest.raises(ValueError, match=r"reads an attribute or index of column '(description|title)'; "
                                         r"name the column alone"):
        template_fields(template)


@pytest.mark.parametrize("template", ["{}", "{0}", "{title", "title}"])
def test_template_fields_refuses_positional_and_malformed_templates(template: str) -> None:
    with pytest.raises(ValueError):
        template_fields(template)


def test_render_fills_the_course_template_with_stripped_values() -> None:
    prompt = render(COURSE_TEMPLATE, {"title": " Lamp ", "description": "Bright.\n", "price": 5.0})
    assert prompt == f"{QUESTION}\n\nLamp\nBright.\n\n{PRICE_PREFIX}"
