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
    return float(match.group()) if match else None


def template_fields(template: str) -> list[str]:
    """Names of the columns a `str.format` template reads, in order."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def render(template: str, row: Mapping[str, object]) -> str:
    """Fill the template from a data row; the caller has checked the fields exist."""
    return template.format(**{name: str(row[name]).strip() for name in template_fields(template)})


def prompt_of(text: str) -> str:
    """A training text holds the answer after "Price is $"; the prompt ends at that prefix."""
    head, sep, _ = text.rpartition(PRICE_PREFIX)
    return head + sep if sep else text


def title_of(prompt: str) -> str:
    """The product's title: the first line after the question, as the course prints it."""
    body = prompt.split("\n\n", 1)[1] if prompt.startswith(QUESTION) else prompt
    first = body.strip().split("\n", 1)[0].strip()
    return first if len(first) <= TITLE_WIDTH else first[:TITLE_WIDTH] + "..."
