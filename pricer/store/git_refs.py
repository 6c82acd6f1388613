"""Baselines as committed at a git ref (`--pricer-against origin/main`): a change that rewrites its own baseline is
still judged against the target branch's."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from pricer.errors import BaselineError, OptionError
from pricer.store.baselines import Baseline, read_baseline

OPTION = "--pricer-against"


@dataclass(frozen=True, slots=True, kw_only=True)
class CommittedBaseline:
    """A baseline as stored at a ref, and whether the working tree's file is the same text."""

    ref: str
    commit: str
    baseline: Baseline
    unchanged: bool  # the working tree holds the same file: judging against it again would say nothing new

    @property
    def label(self) -> str:
        return f"{self.ref} ({self.commit[:12]})"


def baseline_at(ref: str, path: Path) -> CommittedBaseline:
    """The baseline at `path` as committed at `ref`; OptionError for an unknown ref (with the fetch that brings it,
    as a shallow clone needs), BaselineError when the file is not there."""
    path = Path(path).absolute()
    where = next((p for p in (path.parent, *path.parents) if p.is_dir()), Path.cwd())
    top = Path(_git(where, "rev-parse", "--show-toplevel", what=f"{OPTION} {ref}: {where} is not in a git repository"))
    commit = _commit(top, ref)
    relative = path.resolve().relative_to(top.resolve()).as_posix()
    found = subprocess.run(["git", "show", f"{commit}:{relative}"], cwd=top, capture_output=True, text=True)
    if found.returncode != 0:
        raise BaselineError(f"{relative}: no such baseline at {ref} ({commit[:12]}), so this width has nothing to be "
                            f"judged against there; a model or width new in this change lands its baseline first: "
                            f"gate without {OPTION} until it is on {ref}")
    baseline = read_baseline(path, text=found.stdout, where=f"{ref}:{relative}")
    try:
        unchanged = path.read_text(encoding="utf-8") == found.stdout
    except OSError:
        unchanged = False
    return CommittedBaseline(ref=ref, commit=commit, baseline=baseline, unchanged=unchanged)


def _commit(top: Path, ref: str) -> str:
    found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=top,
                           capture_output=True, text=True)
    if found.returncode == 0:
        return found.stdout.strip()
    shallow = _git(top, "rev-parse", "--is-shallow-repository", what="") == "true"
    remote, _, branch = ref.partition("/")
    if any(c in ref for c in "~^"):  # an ancestor: more of the history, not another ref, brings it
        fetch = "git fetch --unshallow"
    else:
        fetch = f"git fetch {remote} {branch}" if branch else f"git fetch origin {ref}"
    why = (f"this clone is shallow and lacks it: fetch it ({fetch}), or clone with full history "
           "(actions/checkout: fetch-depth: 0)") if shallow else f"fetch it first ({fetch})"
    raise OptionError(f"{OPTION} {ref}: no such branch, tag or commit in {top}; {why}")


def _git(cwd: Path, *args: str, what: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise OptionError(f"{OPTION}: git could not run ({exc})") from None
    if done.returncode != 0 and what:
        raise OptionError(what)
    return done.stdout.strip()
