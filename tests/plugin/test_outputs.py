"""Outputs and settings that can never harm: a device, a pipe, a link, a read-only folder or a mistyped ini value as
the target of a summary, history, chart, baseline or saved run is streamed, followed or refused by name.

Device-like targets are the tests' own: a FIFO, and a private `mknod` of the null and full devices where the tests
run as root (else skipped); the machine's /dev is only written as a stream (/dev/null, /dev/stdout).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.gate.test_compare import FINE_TUNED, committed
from tests.plugin.test_plugin import stored_baselines  # noqa: F401 (a module-scoped fixture this module uses)
from tests.plugin.test_plugin import EVAL_FILE, EVAL_TEST, SMALL_N, classic_file, gate, named

from pricer.cli.main import main
from pricer.errors import DataError, OutputError

pytestmark = pytest.mark.usefixtures("late_imports")
# Imported late by the history (torch, for the machine's details) and by xdist's controller (see conftest.py).
MORE_LATE_IMPORTS = ("torch", "xdist.dsession", "execnet")
NULL, FULL = 3, 7  # minor numbers of Linux's null and full devices (major 1)


def device(folder: Path, name: str, minor: int) -> Path:
    """A private character device node (1, minor) in `folder`, made only where the tests run as root."""
    if os.geteuid() != 0:
        pytest.skip("making a private character device (mknod) needs root; CI runs as root")
    path = folder / name
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    except PermissionError:
        pytest.skip("this container may not make device nodes (no CAP_MKNOD)")
    return path


def is_device(path: Path) -> bool:
    return stat.S_ISCHR(os.lstat(path).st_mode)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Nothing can be created in or removed from `folder`: its mode without root, the immutable flag as root."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)],
                                                          capture_output=True).returncode != 0:
        pytest.skip("root ignores a folder's mode, and this file system has no immutable flag (chattr +i)")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.fixture
def baselined(pytester: pytest.Pytester, stored_baselines: Path) -> pytest.Pytester:
    """A project with the constant predictor's baseline on 250 items and one eval test."""
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(**{EVAL_FILE: EVAL_TEST})
    shutil.copytree(stored_baselines, pytester.path / "baselines")
    return pytester


def passing_compare(tmp_path: Path, *args: str) -> tuple[int, Path]:
    """`pricer compare` of a committed baseline with its own copy (exit 0), with these output options."""
    baseline = committed(FINE_TUNED, "4bit")
    copy = shutil.copyfile(baseline, tmp_path / "rerun.json")
    return main(["compare", str(baseline), str(copy), *args]), copy


# ---------------------------------------------------------------- devices and pipes are streams, never replaced


def test_history_into_a_null_device_keeps_the_device_and_the_gate_passes(baselined, data_dir, tmp_path):
    null = device(tmp_path, "null", NULL)

    result = gate(baselined, data_dir, f"--pricer-history={null}")

    assert result.ret == pytest.ExitCode.OK
    assert is_device(null), "the atomic replace turned the device node into a file"


def test_compare_chart_into_a_full_device_keeps_it_and_exits_3_naming_it(tmp_path, capsys):
    full = device(tmp_path, "full", FULL)

    code, _ = passing_compare(tmp_path, f"--chart={full}")

    captured = capsys.readouterr()
    assert code == 3, "a passing verdict whose chart was not written is neither 0 nor a failing verdict's 1"
    assert ": passed: not measurably worse" in captured.out
    assert captured.err == f"pricer: error: {full}: cannot be written: No space left on device\n"
    assert is_device(full)


def test_summary_into_a_full_device_is_never_read_back_and_fails_in_one_line(baselined, data_dir, tmp_path):
    full = device(tmp_path, "full", FULL)

    result = gate(baselined, data_dir, f"--pricer-summary={full}")

    assert result.ret == 3  # passed, but an output is broken
    result.stdout.fnmatch_lines([f"cannot append the summary: {named(full)}: cannot be written: No space left on "
                                 "device"])
    assert is_device(full)


def test_compare_summary_into_a_full_device_exits_3_naming_it(tmp_path, capsys):
    full = device(tmp_path, "full", FULL)

    code, _ = passing_compare(tmp_path, f"--summary={full}")

    assert code == 3
    assert capsys.readouterr().err == f"pricer: error: {full}: cannot be written: No space left on device\n"


def test_summary_into_a_fifo_nobody_reads_is_refused_at_once_naming_it(tmp_path, capsys):
    fifo = tmp_path / "summary.fifo"
    os.mkfifo(fifo)

    code, _ = passing_compare(tmp_path, f"--summary={fifo}")  # blocked forever in open() before

    assert code == 3
    assert capsys.readouterr().err == (f"pricer: error: {fifo}: a FIFO (named pipe) that nothing reads; start its "
                                       "reader first\n")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_summary_into_a_fifo_with_a_reader_is_written_once_as_a_stream(tmp_path):
    from pricer.plugin.summary import append_document

    fifo = tmp_path / "summary.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # the reader is there before the summary opens the pipe
    try:
        append_document(fifo, "## pricer compare: run\n")
        received = os.read(reader, 1 << 16)
    finally:
        os.close(reader)

    assert received == b"## pricer compare: run\n"  # no blank line first: a stream's end is never read back


@pytest.mark.parametrize("option", ["--pricer-summary=/dev/null", "--pricer-history=/dev/null"])
def test_dev_null_as_an_output_keeps_a_passing_gate_passing(baselined, data_dir, option):
    result = gate(baselined, data_dir, option)

    assert result.ret == pytest.ExitCode.OK
    assert is_device(Path("/dev/null"))


def test_compare_summary_to_dev_stdout_into_a_pipe_is_streamed(tmp_path):
    baseline = committed(FINE_TUNED, "4bit")
    copy = shutil.copyfile(baseline, tmp_path / "rerun.json")

    done = subprocess.run([sys.executable, "-m", "pricer.cli.main", "compare", str(baseline), str(copy),
                           "--summary=/dev/stdout"], capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    assert "## pricer compare: " in done.stdout and "summary appended to /dev/stdout" in done.stdout


def test_compare_summary_to_dev_stdout_redirected_to_a_log_appends_to_the_log(tmp_path):
    baseline = committed(FINE_TUNED, "4bit")
    copy = shutil.copyfile(baseline, tmp_path / "rerun.json")
    log = tmp_path / "ci.log"
    log.write_text("earlier output\n")
    inode = log.stat().st_ino

    with log.open("a") as out:
        done = subprocess.run([sys.executable, "-m", "pricer.cli.main", "compare", str(baseline), str(copy),
                               "--summary=/dev/stdout"], stdout=out, stderr=subprocess.PIPE, text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    assert log.stat().st_ino == inode, "the log file was replaced"
    text = log.read_text()
    assert text.startswith("earlier output\n") and "## pricer compare: " in text


def test_block_devices_sockets_and_folders_are_refused_by_what_they_are(tmp_path):
    import socket

    from pricer.files import atomic_write_bytes, output_problem

    sock_path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        assert output_problem(sock_path).startswith("a socket; pricer writes only regular files and streams")
        with pytest.raises(OutputError, match=r"s\.sock: a socket"):
            atomic_write_bytes(sock_path, b"x")
    assert output_problem(tmp_path).startswith("a folder")
    if os.geteuid() == 0:
        disk = tmp_path / "disk"
        with contextlib.suppress(PermissionError):
            os.mknod(disk, stat.S_IFBLK | 0o600, os.makedev(7, 200))  # a loop device's numbers, never opened
            assert output_problem(disk).startswith("a block device (a disk)")


# ---------------------------------------------------------------- appending only to what is ours


@pytest.mark.parametrize("name,content", [("chart.png", b"\x89PNG\r\n\x1a\n...."),
                                          ("pyproject.toml", b"[project]\nname = 'x'\n")])
def test_summary_onto_another_programs_file_is_refused_before_the_run(baselined, name, content):
    target = baselined.path / name
    target.write_bytes(content)

    result = baselined.runpytest("-p", "no:cacheprovider", "-m", "eval", f"--pricer-summary={name}")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --pricer-summary: '{named(target)}' is an existing file that is not "
                                 "Markdown (*); the summary is appended only to a new, empty or Markdown file*"])
    assert target.read_bytes() == content


def test_compare_summary_onto_a_toml_file_is_refused_and_leaves_it_parsing(tmp_path, capsys):
    toml = tmp_path / "pyproject.toml"
    toml.write_text("[project]\nname = 'x'\n")

    with pytest.raises(SystemExit) as stopped:
        passing_compare(tmp_path, f"--summary={toml}")

    assert stopped.value.code == 2
    assert "is an existing file that is not Markdown" in capsys.readouterr().err
    assert toml.read_text() == "[project]\nname = 'x'\n"


def test_summary_appends_to_an_empty_file_a_markdown_file_and_the_step_summary(tmp_path, monkeypatch):
    from pricer.files import append_problem

    (tmp_path / "empty.txt").touch()
    (tmp_path / "notes.md").write_text("# notes\n")
    (tmp_path / "ours.txt").write_text("## pricer gate: m: passed\n")
    step = tmp_path / "step_summary_abc"
    step.write_text("Some other step wrote this\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))

    ours = ("empty.txt", "notes.md", "ours.txt", "step_summary_abc")
    assert [append_problem(tmp_path / name) for name in ours] == [None] * 4


@pytest.mark.parametrize("option", ["--pricer-summary=", "--pricer-charts=", "--pricer-save-runs=",
                                    "--pricer-data=", "--pricer-history=", "--pricer-html="])
def test_an_empty_path_option_is_refused_with_the_unset_variable_hint(pytester, option):
    pytester.makeini("[pytest]\n")

    result = pytester.runpytest("-p", "no:cacheprovider", option)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    flag = option.rstrip("=")
    result.stderr.fnmatch_lines([f"*{flag}: an empty value ''; give one, or leave {flag} out (a shell turns an unset "
                                 "environment variable, such as $GITHUB_STEP_SUMMARY outside GitHub Actions, into an "
                                 "empty value)"])


def test_compare_with_an_empty_summary_is_refused_the_same_way(tmp_path, capsys):
    with pytest.raises(SystemExit):
        passing_compare(tmp_path, "--summary=")

    assert "--summary: an empty value ''; give one, or leave --summary out" in capsys.readouterr().err


# ---------------------------------------------------------------- no traceback from an output


def test_history_in_a_folder_it_cannot_write_is_one_line_after_the_verdict_exit_3(baselined, data_dir):
    locked = baselined.path / "locked"
    locked.mkdir()
    with read_only(locked):
        result = gate(baselined, data_dir, "--pricer-history=locked/history.jsonl")

    assert result.ret == 3
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"{named(locked / 'history.jsonl')}: cannot be written: *"])
    assert "Traceback" not in result.stdout.str() and "PermissionError" not in result.stdout.str()


def test_a_summary_we_may_write_in_a_folder_we_may_not_is_appended_in_place(tmp_path):
    from pricer.plugin.summary import append_document

    folder = tmp_path / "locked"
    folder.mkdir()
    summary = folder / "summary.md"
    summary.write_text("# before\n")
    with read_only(folder):
        append_document(summary, "## pricer gate: m: passed\n")

    assert summary.read_text() == "# before\n\n## pricer gate: m: passed\n"


@pytest.mark.parametrize("error", [PermissionError(13, "Permission denied"),
                                   OSError(30, "Read-only file system")], ids=["permission", "read-only"])
def test_a_write_refused_by_the_system_is_one_line_wherever_the_tests_run(baselined, data_dir, monkeypatch, error):
    # As root in a container with neither a folder's mode nor chattr to go by, the file system's answer is planted.
    import pricer.files

    def refused(path, data):
        raise type(error)(error.errno, error.strerror, str(path))

    monkeypatch.setattr(pricer.files, "_replace", refused)

    result = gate(baselined, data_dir, "--pricer-history=history.jsonl", "--pricer-summary=summary.md")

    assert result.ret == 3
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"{named(baselined.path / 'history.jsonl')}: cannot be written: {error.strerror}",
                                 f"cannot append the summary: {named(baselined.path / 'summary.md')}: cannot be "
                                 f"written: {error.strerror}"], consecutive=False)
    assert "Traceback" not in result.stdout.str()


def test_update_baselines_into_a_read_only_folder_fails_in_one_line(baselined, data_dir):
    folder = classic_file(baselined).parent
    with read_only(folder):
        result = gate(baselined, data_dir, "--update-baselines", "--pricer-reason", "try", n=SMALL_N)

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*{named(classic_file(baselined))}: cannot be written: *"])
    assert "Traceback" not in result.stdout.str()


def test_saved_runs_into_a_read_only_folder_are_one_line_and_exit_3(baselined, data_dir):
    runs = baselined.path / "runs"
    runs.mkdir()
    with read_only(runs):
        result = gate(baselined, data_dir, "--pricer-save-runs=runs")

    assert result.ret == 3
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"--pricer-save-runs: {named(runs)}/constant/classic.json: cannot be written: *"])


@pytest.mark.e2e  # xdist workers: `pytest -m e2e`
def test_saved_runs_that_cannot_be_written_under_xdist_are_no_internal_error(baselined, data_dir):
    pytest.importorskip("xdist", reason="pytest-xdist is not installed (pip install -e '.[test]')")
    (baselined.path / "runs").mkdir()
    (baselined.path / "runs" / "constant").write_text("a file where the run's folder goes\n")

    result = gate(baselined, data_dir, "--pricer-save-runs=runs", "-n", "2")

    assert result.ret == 3
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["--pricer-save-runs: *runs/constant/classic.json: inside *runs/constant, which is a "
                                 "regular file, not a folder"])


# ---------------------------------------------------------------- links are followed on purpose


def test_update_baselines_through_a_link_rewrites_the_file_it_points_at(baselined, data_dir, tmp_path):
    link = classic_file(baselined)
    kept = tmp_path / "elsewhere.json"
    shutil.move(link, kept)
    link.symlink_to(kept)

    gate(baselined, data_dir, "--update-baselines", "--pricer-reason", "through the link", n=SMALL_N)

    assert link.is_symlink() and link.resolve() == kept.resolve()
    assert json.loads(kept.read_text())["reason"] == "through the link"


def test_history_through_a_link_appends_to_the_file_it_points_at(tmp_path):
    from tests.history.test_history import entry

    from pricer.history.accuracy_history import append_accuracy, read_accuracy

    target = tmp_path / "kept.jsonl"
    target.touch()
    link = tmp_path / "history.jsonl"
    link.symlink_to(target)
    append_accuracy(link, [entry()])
    append_accuracy(link, [entry()])

    assert link.is_symlink()
    assert len(read_accuracy(target)) == 2


def test_a_dangling_link_as_an_output_is_refused_naming_where_it_points(tmp_path):
    from pricer.files import atomic_write_bytes

    link = tmp_path / "chart.png"
    link.symlink_to(tmp_path / "gone" / "chart.png")

    with pytest.raises(OutputError, match=r"chart\.png: a dangling link to .*gone/chart\.png, which does not exist"):
        atomic_write_bytes(link, b"png")
    assert link.is_symlink()


# ---------------------------------------------------------------- messages that name the real cause


def test_a_float_index_in_a_run_row_is_named_a_json_float(tmp_path, capsys):
    run = tmp_path / "run.jsonl"
    run.write_text('{"index": 5.0, "guess": 1.0}\n')

    code = main(["compare", str(committed(FINE_TUNED, "4bit")), str(run)])

    assert code == 2
    assert capsys.readouterr().err == (f"pricer: error: {run}:1: field 'index': 5.0 is a JSON float (it has a decimal "
                                       "point); write the index as a whole number, 5\n")


@pytest.mark.parametrize("name", ["dangling", "folder", "fifo"])
def test_a_data_folders_split_file_that_is_not_a_file_is_named_as_what_it_is(tmp_path, data_dir, name):
    from pricer.task.items import DataSpec
    from pricer.task.load import load_items

    shutil.copyfile(data_dir / "train.jsonl", tmp_path / "train.jsonl")
    odd = tmp_path / "test.jsonl"
    {"dangling": lambda: odd.symlink_to(tmp_path / "missing.jsonl"), "folder": odd.mkdir,
     "fifo": lambda: os.mkfifo(odd)}[name]()
    what = {"dangling": f"a dangling link to {tmp_path / 'missing.jsonl'}", "folder": "a folder",
            "fifo": "a FIFO (named pipe)"}[name]

    with pytest.raises(DataError) as raised:
        load_items(DataSpec(source=str(tmp_path), split="test", n=4))

    assert str(raised.value) == f"{odd}: {what}, not a data file; the 'test' split is read from a regular file of rows"


def test_a_baseline_or_history_that_is_a_fifo_is_named_never_read(tmp_path, capsys):
    from pricer.errors import HistoryError
    from pricer.history.accuracy_history import read_accuracy

    fifo = tmp_path / "4bit.json"
    os.mkfifo(fifo)

    code = main(["compare", str(fifo), str(committed(FINE_TUNED, "4bit"))])  # blocked forever in read() before

    assert code == 2
    assert capsys.readouterr().err == f"pricer: error: {fifo}: a FIFO (named pipe), not a file to read\n"
    with pytest.raises(HistoryError, match="a FIFO \\(named pipe\\), not a file to read"):
        read_accuracy(fifo)


def test_reason_without_update_baselines_is_a_usage_error(pytester):
    pytester.makeini("[pytest]\n")

    result = pytester.runpytest("-p", "no:cacheprovider", "--pricer-reason", "why")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --pricer-reason says why --update-baselines rewrites the baselines; without "
                                 "--update-baselines nothing is rewritten: add it, or leave --pricer-reason out"])


# ---------------------------------------------------------------- ini values typed once


@pytest.mark.parametrize("key", ["pricer_summary", "pricer_history", "pricer_charts", "pricer_save_runs"])
@pytest.mark.parametrize("value,kind", [("1", "integer"), ("1.5", "float"), ('{path = "x"}', "table")])
def test_a_path_ini_key_of_another_toml_type_is_refused_and_creates_nothing(pytester, key, value, kind):
    pytester.makepyprojecttoml(f"[tool.pytest.ini_options]\n{key} = {value}\n")
    before = sorted(p.name for p in pytester.path.iterdir())

    result = pytester.runpytest("-p", "no:cacheprovider")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: *pyproject.toml: ini {key} = * is a TOML {kind}; {key} takes text in "
                                 f'quotes, e.g. {key} = "*"'])
    assert sorted(p.name for p in pytester.path.iterdir()) == before


def test_pricer_history_types_the_projects_ini_key_the_same_way(tmp_path, monkeypatch, capsys):
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\npricer_history = 1\n")
    monkeypatch.chdir(tmp_path)

    code = main(["history", "--no-chart"])

    assert code == 2
    assert capsys.readouterr().err == (f"pricer: error: {tmp_path / 'pyproject.toml'}: ini pricer_history = 1 is a "
                                       "TOML integer; pricer_history takes text in quotes, e.g. pricer_history = "
                                       '".benchmarks/pricer-accuracy.jsonl"\n')
    assert not (tmp_path / "1").exists()


NATIVE_SETTINGS = """
from pricer.plugin.option_values import _option


def test_settings(request):
    assert _option(request.config, "pricer_n") == 8
    assert _option(request.config, "pricer_bits") == (4, 8)
    assert _option(request.config, "pricer_tolerance") == 0.05
"""


@pytest.mark.parametrize("table", ["tool.pytest", "tool.pytest.ini_options"])
def test_toml_numbers_and_lists_are_taken_as_numbers_and_lists(pytester, table):
    if table == "tool.pytest" and int(pytest.__version__.split(".")[0]) < 9:
        pytest.skip("pytest 8 reads no native [tool.pytest] table")
    pytester.makepyprojecttoml(f"[{table}]\npricer_n = 8\npricer_bits = [4, 8]\npricer_tolerance = 0.05\n")
    pytester.makepyfile(test_settings=NATIVE_SETTINGS)

    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


@pytest.mark.parametrize("line,error", [
    ('pricer_n = ""', 'ini pricer_n is empty; give it a value, e.g. pricer_n = 250, or remove the key*'),
    ("pricer_n = true", "ini pricer_n = true is a TOML boolean; pricer_n takes a number, e.g. pricer_n = 250"),
    ("pricer_tolerance = [0.1]", "ini pricer_tolerance = [[]0.1[]] is a TOML array; pricer_tolerance takes a number*"),
    ('pricer_bits = [4, {b = 8}]', "ini pricer_bits = {'b': 8} is a TOML table; pricer_bits takes a number or a list "
     "of them, e.g. pricer_bits = [[]4, 8, 16, 32[]]"),
], ids=["empty", "boolean", "array", "table-in-list"])
def test_other_types_and_empty_values_are_refused_naming_key_type_and_example(pytester, line, error):
    pytester.makepyprojecttoml(f"[tool.pytest.ini_options]\n{line}\n")

    result = pytester.runpytest("-p", "no:cacheprovider")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: *pyproject.toml: {error}"])


# ---------------------------------------------------------------- killed while writing

HEADER = "## pricer gate: m: passed\n\n"
BLOCK_LINES = 2000  # a block of ~30 KB: several pages, the size at which a killed write() can stop part-way
KILLED_WRITER = f"""
import sys
from pathlib import Path

kind, path = sys.argv[1], Path(sys.argv[2])
for count in range(100000):
    if kind == "summary":
        from pricer.plugin.summary import append_document
        append_document(path, {HEADER!r} + f"- line {{count}}\\n" * {BLOCK_LINES})
    elif kind == "history":
        from pricer.history.accuracy_history import append_accuracy
        from tests.history.test_history import entry
        append_accuracy(path, [entry()] * 50)
    else:
        from pricer.report.charts import running_error_chart
        running_error_chart(path, errors=[float(i % 7) for i in range(200 + count)], title=f"run {{count}}")
"""


@pytest.mark.parametrize("kind,name", [("summary", "summary.md"), ("history", "history.jsonl"),
                                       ("chart", "chart.png")])
def test_kill_9_while_writing_leaves_earlier_bytes_and_no_partial_block(tmp_path, kind, name):
    target = tmp_path / name
    repo = Path(__file__).resolve().parents[2]  # where `tests.history.test_history` imports from
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, kind, str(target)], cwd=tmp_path, env=env)
    earlier = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _complete_blocks(kind, target) < 3:  # a few writes landed: one is under way
        earlier = target.read_bytes() if target.exists() else b""
        time.sleep(0.02)
    writer.kill()
    writer.wait()

    assert writer.returncode == -9
    assert _complete_blocks(kind, target) >= 3
    if kind != "chart":  # every earlier byte is still there (a chart is replaced whole, by design)
        assert target.read_bytes().startswith(earlier)


def _complete_blocks(kind: str, path: Path) -> int:
    """How many whole blocks the file holds; AssertionError on a partial one."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    if kind == "summary":
        blocks = data.decode().split(HEADER)
        assert blocks[0] == "", "bytes before the first block"
        for block in blocks[1:]:
            lines = block.strip("\n").split("\n")
            assert len(lines) == BLOCK_LINES and len(set(lines)) == 1, "a partial block"
        return len(blocks) - 1
    if kind == "history":
        from pricer.history.accuracy_history import read_accuracy

        entries = read_accuracy(path)  # raises on a partial line
        assert len(entries) % 50 == 0, "a partial append"
        return len(entries) // 50
    assert data.startswith(b"\x89PNG") and data.endswith(b"IEND\xaeB`\x82"), "a partial PNG"
    return 3
