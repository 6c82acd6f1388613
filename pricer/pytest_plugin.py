"""pricer's pytest plugin: options, markers, fixtures and the end-of-run summary."""

from __future__ import annotations

import pytest

MARKERS = {
    "eval": "accuracy gate: runs a model over the test items and compares with stored baselines",
    "benchmark": "timing with pytest-benchmark; run with -m benchmark",
    "gpu": "needs a CUDA GPU; skipped without one",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, help_text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {help_text}")
