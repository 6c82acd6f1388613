"""The accuracy gate: each width's predictions against its committed baseline (`pytest -m eval`)."""

import pytest

pytestmark = pytest.mark.eval


def test_accuracy_holds_against_baseline(pricer_gate):
    pricer_gate.check()
