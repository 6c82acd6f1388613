"""pricer.files: what a write killed between its temp file and the rename leaves behind is cleaned and never read."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from pricer.files import STALE_TEMP_SECONDS, write_json

REPO = Path(__file__).resolve().parent.parent


def leftover(target: Path, *, age: float) -> Path:
    """A complete temp file as a write killed before its rename leaves it, `age` seconds old."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.parent / f".{target.name}.k9x_2ab.tmp"
    temp.write_text('{"complete": "but never renamed"}\n')
    then = time.time() - age
    os.utime(temp, (then, then))
    return temp


def test_next_write_removes_a_stale_temp_file_a_killed_write_left(tmp_path: Path) -> None:
    target = tmp_path / "baselines" / "constant" / "classic.json"
    stale = leftover(target, age=STALE_TEMP_SECONDS + 5)
    write_json(target, {"error": 1.5})
    assert not stale.exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["classic.json"]


def test_a_fresh_temp_file_of_a_concurrent_writer_is_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "classic.json"
    fresh = leftover(target, age=0)
    write_json(target, {"error": 1.5})
    assert fresh.exists()


def test_temp_files_of_other_files_are_not_touched(tmp_path: Path) -> None:
    other = leftover(tmp_path / "4bit.json", age=STALE_TEMP_SECONDS + 5)
    write_json(tmp_path / "classic.json", {"error": 1.5})
    assert other.exists()


def test_git_ignores_temp_files_beside_baselines() -> None:
    result = subprocess.run(["git", "check-ignore", "--no-index", "baselines/constant/.classic.json.k9x_2ab.tmp"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, "the temp file of a killed baseline write would show in git status"
