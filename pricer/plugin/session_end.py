"""What a session leaves at its end: the Markdown summary and the accuracy history appended (once, by the xdist
controller), a broken output's exit code, and the terminal's pricer sections (verdicts, ladder, unused baselines)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pricer.plugin import workers
from pricer.plugin.fixtures import SESSION_KEY, SUMMARIES_KEY, VERDICTS_KEY, VIEWS_KEY
from pricer.plugin.option_values import _option

HISTORY_NOTE_KEY = pytest.StashKey[tuple[str, bool]]()  # (line for the summary, whether it is an error)
SUMMARY_NOTE_KEY = pytest.StashKey[tuple[str, bool]]()  # (line for the terminal, whether it is an error)
HTML_NOTE_KEY = pytest.StashKey[tuple[str, bool]]()  # (line for the terminal, whether it is an error)
OUTPUT_NOTES_KEY = pytest.StashKey[list[str]]()  # outputs that could not be written, one line each
# The exit code of a run whose verdicts all passed but whose output (summary, history, saved run) could not be
# written: pytest's 3, not the 1 of a failing verdict.
OUTPUT_BROKEN = pytest.ExitCode.INTERNAL_ERROR


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The ladder of this session's runs (under xdist, of every worker's); with --pricer-history, append every gated
    width's metrics (a bad history file fails the run); with --pricer-html, write the report."""
    config = session.config
    if SESSION_KEY in config.stash and workers.finish(config, config.stash[SESSION_KEY]):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED  # under xdist no test gates the ladder: the controller does
    if not _append_summary(config):
        _output_broken(session)
    # saved runs and charts that could not be written, here or in a worker
    for line in workers.output_problems(config, config.stash.get(SESSION_KEY, None)):
        config.stash.setdefault(OUTPUT_NOTES_KEY, []).append(line)
        _output_broken(session)
    _append_history(session)
    if not _write_html(config):
        _output_broken(session)


def _append_history(session: pytest.Session) -> None:
    config = session.config
    path = _option(config, "pricer_history")
    # Under xdist the controller appends every worker's widths at once: workers never write the history.
    if not path or workers.worker_id(config) or SESSION_KEY not in config.stash or not config.stash[VERDICTS_KEY]:
        return
    from pricer.errors import OutputError, PricerError

    eval_run = config.stash[SESSION_KEY]
    try:
        config.stash[HISTORY_NOTE_KEY] = (eval_run.record_accuracy(eval_run.root / path, config.stash[VERDICTS_KEY]), False)
    except OutputError as exc:  # permissions, a full disk, a read-only file system: the verdicts stand
        config.stash[HISTORY_NOTE_KEY] = (str(exc), True)
        _output_broken(session)
    except PricerError as exc:  # a history that is not ours to append to
        config.stash[HISTORY_NOTE_KEY] = (str(exc), True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _output_broken(session: pytest.Session) -> None:
    """A passing run whose output could not be written exits OUTPUT_BROKEN, not as a failing verdict would."""
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = OUTPUT_BROKEN


def _append_summary(config: pytest.Config) -> bool:
    """With --pricer-summary, append the session's Markdown once: serially, or in the xdist controller from what the
    workers relayed (workers never write it). False when the file cannot be written."""
    path = _option(config, "pricer_summary")
    if not path or workers.worker_id(config) or SESSION_KEY not in config.stash:
        return True
    eval_run = config.stash[SESSION_KEY]
    if not eval_run.gates.outcomes:
        return True  # no width was gated (eval tests deselected): nothing to report
    from pricer.plugin.summary import append_document, session_document

    settings = eval_run.settings
    text = session_document(model=settings.model_name, widths=settings.widths, outcomes=eval_run.gates.outcomes,
                            blocks=config.stash[SUMMARIES_KEY], ladder=workers.summary_lines(config),
                            html=_option(config, "pricer_html") if config.stash.get(VIEWS_KEY, None) else None)
    target = eval_run.root / Path(path).expanduser()
    try:
        append_document(target, text)
    except OSError as exc:  # OutputError names the file and the cause
        config.stash[SUMMARY_NOTE_KEY] = (f"cannot append the summary: {exc}", True)
        return False
    config.stash[SUMMARY_NOTE_KEY] = (f"summary appended to {target}", False)
    return True


def _write_html(config: pytest.Config) -> bool:
    """With --pricer-html, write the report once (serially, or in the xdist controller from the relayed views), after
    the history took this run's entries. False when the file cannot be written."""
    path = _option(config, "pricer_html")
    views = config.stash.get(VIEWS_KEY, {})
    if not path or workers.worker_id(config) or SESSION_KEY not in config.stash or not views:
        return True
    from pricer.errors import PricerError
    from pricer.plugin.html_report import write_report

    eval_run = config.stash[SESSION_KEY]
    history = _option(config, "pricer_history")
    try:
        note = write_report(eval_run, eval_run.root / Path(path).expanduser(), views,
                            history=eval_run.root / Path(history).expanduser() if history else None)
    except (OSError, PricerError) as exc:  # OutputError names the file and the cause
        config.stash[HTML_NOTE_KEY] = (f"cannot write the HTML report: {exc}", True)
        return False
    config.stash[HTML_NOTE_KEY] = (note, False)
    return True


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if HISTORY_NOTE_KEY in config.stash:
        note, failed = config.stash[HISTORY_NOTE_KEY]
        terminalreporter.write_sep("=", "pricer history")  # not section(): see the "pricer gate" one
        terminalreporter.line(note, red=failed)
    if SESSION_KEY not in config.stash:
        return
    session = config.stash[SESSION_KEY]
    if not session.gates.outcomes:
        return
    from pricer.store.baselines import unused_baselines

    # write_sep, as pytest's own sections: it ends the progress line first. section() leaves that line "open", so
    # pytest closed it with a blank line before its last line, or not when another plugin's section came first.
    terminalreporter.write_sep("=", "pricer gate")
    for outcome in session.gates.outcomes:
        terminalreporter.line(outcome.text, red=not outcome.passed, green=outcome.passed)
    for line, failed in workers.summary_lines(config):
        terminalreporter.line(line, red=failed)
    if accept := session.gates.accept_all():
        what = ("if these changes are intended, accept every width at once with" if session.gates.any_worse
                else "store every failing width's baseline at once with")
        terminalreporter.line(f"{what}:\n  {accept}", red=True)
    folder = session.home.path("x").parent  # this model's baselines of this hardware class
    unused = unused_baselines(folder, session.gates.used_baselines)
    if unused and not session.settings.predictor:
        terminalreporter.line(f"{len(unused)} stored baselines were not compared in this run:")
        for path in unused:
            terminalreporter.line(f"  {path}")
    terminalreporter.line(workers.loads_line(config, session))
    for key in (SUMMARY_NOTE_KEY, HTML_NOTE_KEY):
        if key in config.stash:
            note, failed = config.stash[key]
            terminalreporter.line(note, red=failed)
    for note in config.stash.get(OUTPUT_NOTES_KEY, ()):
        terminalreporter.line(note, red=True)
