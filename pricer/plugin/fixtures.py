"""The eval tests' fixtures: the session's one EvalSession, the session-scoped width parameter each width's tests
share (so each width loads once), its items, model and run, and the gate an eval test checks."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from pricer.plugin.gate_check import Gate
from pricer.plugin.option_values import _option, _project_root

SETTINGS_KEY = pytest.StashKey["EvalSettings"]()
SESSION_KEY = pytest.StashKey["EvalSession"]()
VERDICTS_KEY = pytest.StashKey[dict[str, bool]]()  # width -> gate passed, for the accuracy history
SUMMARIES_KEY = pytest.StashKey[dict[str, str]]()  # width -> its Markdown block, for --pricer-summary
VIEWS_KEY = pytest.StashKey[dict[str, dict]]()  # width -> its HTML report view as plain values, for --pricer-html


def eval_session(config: pytest.Config, *, warn: bool = True):  # -> pricer.plugin.session.EvalSession
    """The session's one EvalSession, made on first use so plain test runs never build it (the xdist controller's
    is made with warn=False: its workers warn)."""
    if SESSION_KEY not in config.stash:
        from pricer.gate.verdict import SMALL_N
        from pricer.plugin.session import EvalSession

        settings = config.stash[SETTINGS_KEY]
        if warn and settings.data.n is not None and settings.data.n < SMALL_N:
            warnings.warn(f"--pricer-n {settings.data.n} is small: the gate can only catch large regressions",
                          UserWarning, stacklevel=1)
        config.stash[SESSION_KEY] = EvalSession(settings, root=_project_root(config))
    return config.stash[SESSION_KEY]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # One session-scoped parameter per width: pytest groups tests by it, so each width loads once.
    if "pricer_width" in metafunc.fixturenames:
        widths = eval_session(metafunc.config).settings.widths
        metafunc.parametrize("pricer_width", widths, ids=widths, indirect=True, scope="session")


@pytest.fixture(scope="session")
def pricer_session(request: pytest.FixtureRequest):
    """The EvalSession: settings, items, models and runs of this pytest session."""
    return eval_session(request.config)


@pytest.fixture(scope="session")
def pricer_width(request: pytest.FixtureRequest, pricer_session) -> Iterator[str]:
    """The width under test ("4bit"... or a classic predictor's name); its model is freed after its tests."""
    yield request.param
    pricer_session.release(request.param)


@pytest.fixture(scope="session")
def pricer_items(pricer_session):
    """The scored items, loaded once."""
    return pricer_session.items


@pytest.fixture(scope="session")
def pricer_model(pricer_session, pricer_width: str):
    """The width's loaded model (loaded once per session)."""
    if pricer_session.settings.predictor:
        pytest.skip("a classic predictor has no model to load")
    return pricer_session.model(pricer_width)


@pytest.fixture(scope="session")
def pricer_bench_items(request: pytest.FixtureRequest, pricer_items) -> list:
    """The items whose prompts a benchmark times as one batch: the first --pricer-bench-items."""
    return pricer_items[: _option(request.config, "pricer_bench_items")]


@pytest.fixture(scope="session")
def pricer_bench_rounds(request: pytest.FixtureRequest) -> int | None:
    """Timed rounds per benchmark (--pricer-bench-rounds); None: pytest-benchmark's own options decide."""
    return _option(request.config, "pricer_bench_rounds")


@pytest.fixture(scope="session")
def pricer_run(pricer_session, pricer_width: str):
    """The width's predictions and scores, computed once and shared by every test of that width."""
    from pricer.errors import PricerError

    try:
        return pricer_session.run(pricer_width)
    except PricerError as exc:
        problem = str(exc)
    pytest.fail(problem, pytrace=False)


@pytest.fixture
def pricer_gate(request: pytest.FixtureRequest, pricer_session, pricer_width: str) -> Gate:
    """The gate for this width: compare its run with the stored baseline; its measures become the test's JUnit
    properties."""
    charts = _option(request.config, "pricer_charts")
    return Gate(pricer_session, pricer_width, verdicts=request.config.stash[VERDICTS_KEY],
                summaries=request.config.stash[SUMMARIES_KEY], properties=request.node.user_properties,
                views=request.config.stash[VIEWS_KEY] if _option(request.config, "pricer_html") else None,
                charts=pricer_session.root / Path(charts).expanduser() if charts else None)
