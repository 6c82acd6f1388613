"""Turn a product into the course's prompt, and a model's completion back into a price."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping

QUESTION = "How much does this cost to the nearest dollar?"
PRICE_PREFIX = "Price is $"
# The course's own template: question, blank line, title and description, blank line, answer prefix.
COURSE_TEMPLATE = QUESTION + "\n\n{title}\n{description}\n\n" + PRICE_PREFIX
TITLE_WIDTH = 40  # the course's Tester cuts titles to 40 characters plus "..."

# The course's Tester takes the first number after dropping "$" and ",".
_NUMBER = re.compile(r"[-+]?\d*\.\d+|\d+")


def parse_price(completion: str) -> float | None:
    """The course's rule: drop "$" and ",", take the first number; None when there is none."""
    match = _NUMBER.search(completion.replace("$", "").replace(",", ""))
    if not match:
        return None
    price = float(match.group())
    # The course's pattern keeps a sign before a decimal ("-5.5"); no price is negative, and its log(x + 1)
    # fails below -1, so such a completion counts as unparsed.
    return price if price >= 0 else None


def template_fields(template: str) -> list[str]:
    """Names of the columns a `str.format` template reads, once each, in order; ValueError if it is malformed."""
    names: list[str] = []
    for _, field, _, _ in string.Formatter().parse(template):  # raises ValueError on "{title" or "}"
        if field is None:
            continue
        name = re.split(r"[.\[]", field, maxsplit=1)[0]
        if not name or name.isdigit():
            raise ValueError(f"field {{{field}}} has no column name; name each column, e.g. {{title}}")
        if name != field:
            # "{description.upper}" would put "<built-in method upper ...>" into every prompt, the same for each row.
            raise ValueError(f"field {{{field}}} reads an attribute or index of column {name!r}; "
                             f"name the column alone, {{{name}}}")
        if name not in names:
            names.append(name)
    return names


def render(template: str, row: Mapping[str, object]) -> str:
    """Fill the template from a data row; the caller has checked the fields exist."""
    values = {name: row[name] for name in template_fields(template)}
    return template.format(**{name: value.strip() if isinstance(value, str) else value
                              for name, value in values.items()})


def prompt_of(text: str) -> str:
    """A training text holds the answer after "Price is $"; the prompt ends at that prefix."""
    head, sep, _ = text.rpartition(PRICE_PREFIX)
    return head + sep if sep else text


def title_of(prompt: str) -> str:
    """The product's title: the first line after the course's question, as the course prints it."""
    return label_of(prompt[len(QUESTION):] if prompt.startswith(QUESTION) else prompt)


def label_of(text: str) -> str:
    """An item's label: the first non-blank line of its own text, cut as the course cuts titles."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first if len(first) <= TITLE_WIDTH else first[:TITLE_WIDTH] + "..."
