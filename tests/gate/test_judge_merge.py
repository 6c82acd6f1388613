"""Judging the changes people merge: another model, prompt or decoding gets a verdict against the baseline it
replaces; --update-baselines judges before it stores; --pricer-against judges against the target branch's baseline;
the anchor keeps small losses from adding up. Classic predictors stand in for models (no LLM is loaded)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pricer.store.baselines import read_baseline

N = 100  # enough items for the bag of words' lead over the constant guess to be significant
NAME = "shop"  # the baselines folder every run here shares, whatever predictor made it
EVAL_TEST = """
import pytest

pytestmark = pytest.mark.eval


def test_accuracy_holds_against_baseline(pricer_gate):
    pricer_gate.check()
"""

pytestmark = pytest.mark.usefixtures("late_imports")


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_price_gate=EVAL_TEST)
    return pytester


def gate(pytester: pytest.Pytester, data: Path, predictor: str, *args: str) -> pytest.RunResult:
    """`pytest -m eval` gating a classic predictor under the shared baselines name."""
    return pytester.runpytest("-p", "no:cacheprovider", "-m", "eval", "--pricer-predictor", predictor,
                              f"--pricer-baseline-name={NAME}", "--pricer-n", str(N), f"--pricer-data={data}", *args)


def stored(pytester: pytest.Pytester) -> Path:
    return pytester.path / "baselines" / NAME / "classic.json"


def update(pytester: pytest.Pytester, data: Path, predictor: str, reason: str, *args: str) -> pytest.RunResult:
    return gate(pytester, data, predictor, "--update-baselines", "--pricer-reason", reason, *args)


def test_a_new_template_prices_the_same_items_and_other_rows_are_other_items(tmp_path):
    from pricer.task.items import DataSpec, identity_digest, items_digest
    from pricer.task.load import load_items

    rows = [{"title": f"Lamp {i}", "description": f"bright {i}", "price": 10.0 + i} for i in range(4)]
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    plain = load_items(DataSpec(source=str(path), n=None, template="{title}\n{description}\n\nPrice is $"))
    reworded = load_items(DataSpec(source=str(path), n=None, template="Item: {title}\n\nPrice is $"))
    rows[2]["description"] = "dim"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    edited = load_items(DataSpec(source=str(path), n=None, template="{title}\n{description}\n\nPrice is $"))

    assert identity_digest(plain) == identity_digest(reworded) != identity_digest(edited)
    assert items_digest(plain) != items_digest(reworded)


def test_another_model_is_judged_better_against_the_baseline_it_replaces_not_refused(project, data_dir):
    update(project, data_dir, "constant", "first").assert_outcomes(failed=1)

    result = gate(project, data_dir, "bow", "-rA")

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "bow: passed: better: *",
        "what changed since the baseline (judged by the verdict):",
        "  predictor: baseline 'constant', now 'bow'",
        "Error * better",
    ])
    result.stdout.fnmatch_lines([
        "*the baseline describes another model (predictor changed): make this run the new baseline with: pytest * --update-baselines*",
    ])
    assert "not comparable" not in result.stdout.str()


def test_another_model_that_is_worse_fails_with_the_table(project, data_dir):
    update(project, data_dir, "bow", "first").assert_outcomes(failed=1)

    result = gate(project, data_dir, "constant")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*classic.json: constant: FAILED: * is worse by*", "measure *", "Error * WORSE"])


def test_update_refuses_a_worse_run_and_keeps_the_baseline(project, data_dir):
    update(project, data_dir, "bow", "first").assert_outcomes(failed=1)
    before = stored(project).read_bytes()

    result = update(project, data_dir, "constant", "cheaper to serve")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*classic.json: not rewritten: this run is WORSE than the baseline it would replace:",
        "to store it all the same, name the trade-off: pytest * --update-baselines --pricer-reason "
        "'cheaper to serve' --pricer-accept-worse 'what it buys'",
    ])
    assert stored(project).read_bytes() == before


def test_update_stores_a_worse_run_with_the_trade_off_named_and_drift_restarts_there(project, data_dir):
    update(project, data_dir, "bow", "first").assert_outcomes(failed=1)

    result = update(project, data_dir, "constant", "cheaper to serve", "--pricer-accept-worse=no model to serve")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["judged against the baseline it replaces: WORSE (*); stored as a trade-off: "
                                 "no model to serve (drift is measured from this run on)"])
    baseline = read_baseline(stored(project))
    assert baseline.trade_off == "no model to serve"
    assert baseline.verdict.startswith("WORSE (") and baseline.verdict.endswith(", accepted: no model to serve")
    assert baseline.anchor is None  # the accepted trade-off is the new reference
    assert [h.reason for h in baseline.history] == ["first"]


def test_update_records_how_the_new_baseline_was_judged_and_an_improvement_becomes_the_anchor(project, data_dir):
    update(project, data_dir, "constant", "first").assert_outcomes(failed=1)

    result = update(project, data_dir, "bow", "a real model")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["judged against the baseline it replaces: better (*); better than the best state "
                                 "accepted so far: drift is measured from this run on"])
    baseline = read_baseline(stored(project))
    assert baseline.verdict.startswith("better ("), baseline.verdict
    assert baseline.anchor is None  # the improvement is the state later drift is judged against
    assert (baseline.history[0].reason, baseline.history[0].verdict) == ("first", "")


def test_accept_worse_without_update_is_a_usage_error(project, data_dir):
    result = gate(project, data_dir, "constant", "--pricer-accept-worse=cheaper")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --pricer-accept-worse names the trade-off*give it with --update-baselines*"])


def test_against_with_update_is_a_usage_error(project, data_dir):
    result = update(project, data_dir, "constant", "first", "--pricer-against=main")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --pricer-against main judges a gate against a branch's baselines; *"])


def test_an_anchor_of_other_items_is_refused_naming_the_file(tmp_path, data_dir):
    from pricer.errors import BaselineError

    _, path = write_chain(tmp_path, data_dir, shares=(1.0, 1.1, 1.2))
    raw = json.loads(path.read_text())
    raw["anchor"]["items"][0]["truth"] += 1
    raw.pop("checksum")
    from pricer.store.baselines import _checksum

    path.write_text(json.dumps({**raw, "checksum": _checksum(raw)}))
    with pytest.raises(BaselineError, match=r"classic.json: anchor: its items are not the baseline's"):
        read_baseline(path)


def test_drift_past_the_tolerance_fails_against_the_anchor_though_each_step_passed(tmp_path, data_dir):
    from pricer.gate.compare import compare_run, read_run
    from pricer.gate.verdict import GateConfig

    chain, path = write_chain(tmp_path, data_dir, shares=(1.0, 1.06, 1.12, 1.18))
    baseline = read_baseline(path)
    last = read_run(chain[-1])

    comparison = compare_run(baseline, last, GateConfig(), intervals=False)

    step, drift = comparison.verdict, comparison.verdict.references[0][1]
    assert not step.passed and drift.worse, step.message()
    assert not any(j.failed for j in step.judgements), "the last step alone is within its tolerance"
    assert "against the anchor of " in step.message() and "(step 0)" in step.message()


def write_chain(folder: Path, data: Path, *, shares: tuple[float, ...]) -> tuple[list[Path], Path]:
    """A baseline rewritten once per share (each run's guesses `share` times further from the truth, in log terms, than the
    bag of words'), the last share left as a run file: each step small, their sum large."""
    from pricer.engines.classic import train_classic
    from pricer.engines.evaluate import score_run
    from pricer.engines.predict import Prediction
    from pricer.store.baselines import write_baseline
    from pricer.store.fingerprint import Fingerprint
    from pricer.task.items import DataSpec
    from pricer.task.load import load_items

    items = load_items(DataSpec(source=str(data), n=N))
    bow = train_classic("bow", load_items(DataSpec(source=str(data), split="train", n=None)))
    honest = bow.predict(items)
    fingerprint = Fingerprint(decisive={"predictor": "bow", "n": N})
    path, runs = folder / "baselines" / "classic.json", []
    for step, share in enumerate(shares):
        guesses = [Prediction(guess=item.price * (p.guess / item.price) ** share, completion=None, parsed=True)
                   for item, p in zip(items, honest)]
        run = score_run("bow", items, guesses)
        target = path if step < len(shares) - 1 else folder / "run.json"
        previous = read_baseline(path) if path.exists() and target == path else None
        write_baseline(target, run=run, fingerprint=fingerprint, reason=f"step {step}", previous=previous)
        runs.append(target)
    return runs, path


# --pricer-against: a pull request that rewrites its own baseline is still judged against main's.

def git(cwd: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin:/usr/local/bin"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def two_commits(project: pytest.Pytester, data_dir: Path) -> pytest.Pytester:
    """main: the bag of words' baseline; branch `change`: the constant guess, its baseline rewritten as a trade-off."""
    update(project, data_dir, "bow", "first").assert_outcomes(failed=1)
    git(project.path, "init", "-q", "-b", "main")
    git(project.path, "add", "-A")
    git(project.path, "commit", "-q", "-m", "bag of words")
    git(project.path, "checkout", "-q", "-b", "change")
    update(project, data_dir, "constant", "simpler", "--pricer-accept-worse=simpler").assert_outcomes(failed=1)
    git(project.path, "commit", "-q", "-am", "constant, baseline rewritten")
    return project


def test_a_change_that_rewrote_its_baseline_fails_against_main(two_commits, data_dir):
    result = gate(two_commits, data_dir, "constant", "--pricer-against=main")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*classic.json: constant: FAILED: against main (*): * is worse by*",
        "against main (*):",
        "  constant: FAILED: * is worse by*",
    ])


def test_against_passes_where_the_baseline_is_as_on_main(two_commits, data_dir):
    git(two_commits.path, "checkout", "-q", "main")

    result = gate(two_commits, data_dir, "bow", "--pricer-against=main", "-rA")

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*the baseline is as on main (*)*"])


def test_against_an_unknown_ref_names_it_and_the_fetch(two_commits, data_dir):
    result = gate(two_commits, data_dir, "constant", "--pricer-against=origin/main")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*--pricer-against origin/main: no such branch, tag or commit in *; fetch it first "
                                 "(git fetch origin main)*"])


def test_against_in_a_shallow_clone_says_to_fetch_history(two_commits, data_dir, tmp_path):
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--depth", "1", "--branch", "change", f"file://{two_commits.path}", str(clone))
    (clone / "test_price_gate.py").write_text(EVAL_TEST)

    result = subprocess.run(
        ["python", "-m", "pytest", "-p", "no:cacheprovider", "-m", "eval", "--pricer-predictor", "constant",
         f"--pricer-baseline-name={NAME}", "--pricer-n", str(N), f"--pricer-data={data_dir}",
         "--pricer-against=origin/main"], cwd=clone, capture_output=True, text=True)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "this clone is shallow and lacks it" in result.stdout and "fetch-depth: 0" in result.stdout


def test_against_a_ref_without_the_baseline_says_it_is_new_there(two_commits, data_dir):
    args = ("-p", "no:cacheprovider", "-m", "eval", "--pricer-predictor", "constant", "--pricer-baseline-name=other",
            "--pricer-n", str(N), f"--pricer-data={data_dir}")
    two_commits.runpytest(*args, "--update-baselines", "--pricer-reason=new").assert_outcomes(failed=1)

    result = two_commits.runpytest(*args, "--pricer-against=main")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*other/classic.json: no such baseline at main (*)*gate without --pricer-against*"])


# The project's own two models: the fine-tuned adapter against the base model's baselines, same items.

@pytest.mark.parametrize("width", ["4bit", "8bit", "16bit", "32bit"])
def test_the_fine_tuned_model_is_judged_against_the_base_models_baseline(width):
    from pricer.gate.compare import compare_files
    from pricer.gate.verdict import GateConfig

    root = Path(__file__).parents[2] / "baselines"
    base = root / "smollm2-135m-instruct" / "cpu-float32" / f"{width}.json"
    tuned = root / "smollm2-135m-instruct-smollm2-135m-pricer" / "cpu-float32" / f"{width}.json"

    verdict = compare_files(base, tuned, GateConfig()).verdict

    assert verdict.passed and not verdict.not_comparable, verdict.message()
    assert {"Error", "log error"} <= set(verdict.better), verdict.message()
    assert [c.field for c in verdict.changes][:1] == ["adapter_sha256"]
    assert verdict.judgements[1].worsening < 0  # log error: far better
    assert json.loads(tuned.read_text())["metrics"]["error"] < json.loads(base.read_text())["metrics"]["error"]


def test_a_prompt_cut_to_its_title_is_judged_worse_on_the_committed_data():
    # A real run (benchmarks/judge_merge.py): the fine-tuned model at 32 bits, each prompt cut to 120 characters.
    from pricer.gate.compare import compare_files
    from pricer.gate.verdict import GateConfig

    root = Path(__file__).parents[2]
    base = root / "baselines" / "smollm2-135m-instruct-smollm2-135m-pricer" / "cpu-bfloat16" / "32bit.json"
    cut = root / "benchmarks" / "results" / "judge-merge" / "cpu-bfloat16" / "prompt-cut-32bit.json"

    verdict = compare_files(base, cut, GateConfig()).verdict

    assert verdict.worse and not verdict.not_comparable, verdict.message()
    assert {c.field for c in verdict.changes} >= {"prompt", "prompts_sha256"}
    assert "Error is worse by" in verdict.reasons[0]


def test_a_harmless_rewording_that_moves_49_guesses_is_judged_not_worse():
    # A real run (benchmarks/judge_merge.py): "Product listing from an online shop." before every prompt.
    from pricer.gate.compare import compare_files
    from pricer.gate.verdict import GateConfig

    root = Path(__file__).parents[2]
    base = root / "baselines" / "smollm2-135m-instruct-smollm2-135m-pricer" / "cpu-bfloat16" / "32bit.json"
    reworded = root / "benchmarks" / "results" / "judge-merge" / "cpu-bfloat16" / "reworded-32bit.json"

    verdict = compare_files(base, reworded, GateConfig()).verdict

    moved = sum(b.guess != r.guess for b, r in zip(read_baseline(base).items, read_baseline(reworded).items))
    assert verdict.passed and moved == 49, verdict.message()


# Every comparison made is shown: a failure against main is never hidden behind the working tree's pass.

def properties(pytester: pytest.Pytester) -> dict[str, str]:
    import xml.etree.ElementTree as ET

    return {p.get("name"): p.get("value") for p in ET.parse(pytester.path / "junit.xml").iter("property")}


def test_a_failure_only_against_main_has_its_own_summary_section_properties_and_chart(two_commits, data_dir):
    result = gate(two_commits, data_dir, "constant", "--pricer-against=main", "--pricer-summary=summary.md",
                  "--junitxml=junit.xml")

    result.assert_outcomes(failed=1)
    summary = (two_commits.path / "summary.md").read_text()
    assert "Comparisons made:\n\n- the baseline `baselines/shop/classic.json`: ok\n- against main (" in summary
    assert "#### Against the baseline: passed" in summary and "#### Against main (" in summary
    against = summary[summary.index("#### Against main ("):]
    assert against.splitlines()[0].endswith(": FAILED") and "| WORSE |" in against
    chart = two_commits.path / ".pricer" / "charts" / "shop" / "classic-moved-against.png"
    assert f"Chart of what moved: `{chart.relative_to(two_commits.path)}`" in against and chart.is_file()
    found = properties(two_commits)
    assert (found["pricer.verdict"], found["pricer.baseline_verdict"], found["pricer.against.verdict"]) == (
        "FAILED", "passed", "FAILED")
    assert found["pricer.comparisons"] == "baseline,against" and found["pricer.against.label"].startswith("main (")
    assert found["pricer.error.verdict"] == "ok" and found["pricer.against.error.verdict"] == "WORSE"
    assert "pricer.large_moves.verdict" in found and "pricer.against.large_moves.verdict" in found
    assert not [n for n in found if any(c.isdigit() for c in n.replace("ci_95", ""))], "no dollar amount in a name"


def test_an_accepted_trade_off_failing_against_main_is_settled_by_a_reviewer_never_accepted_again(two_commits, data_dir):
    result = gate(two_commits, data_dir, "constant", "--pricer-against=main", "--pricer-summary=summary.md")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["this branch already stores the change as an accepted trade-off ('simpler' in "
                                 "classic.json), so accepting it again would rewrite the same baseline and fail the "
                                 "same way against main (*): a reviewer settles it, by approving the trade-off on the "
                                 "pull request with the label 'pricer-trade-off-approved'*"])
    assert "accept it with" not in result.stdout.str()
    assert "pricer-trade-off-approved" in (two_commits.path / "summary.md").read_text()


def test_a_passing_summary_lists_every_comparison_with_its_verdict(project, data_dir):
    update(project, data_dir, "constant", "first").assert_outcomes(failed=1)
    update(project, data_dir, "bow", "a real model").assert_outcomes(failed=1)  # better: the anchor from here
    update(project, data_dir, "bow", "retrained").assert_outcomes(failed=1)  # not worse: the anchor stays

    result = gate(project, data_dir, "bow", "--pricer-summary=summary.md", "--junitxml=junit.xml")

    result.assert_outcomes(passed=1)
    summary = (project.path / "summary.md").read_text()
    assert "- the baseline `baselines/shop/classic.json`: ok\n- against the anchor of " in summary
    assert "#### Against the anchor of " in summary
    found = properties(project)
    assert found["pricer.comparisons"] == "baseline,anchor" and found["pricer.anchor.verdict"] == "passed"


def test_compare_summary_includes_the_comparison_with_the_anchor(tmp_path, data_dir, capsys):
    from pricer.cli.main import main

    chain, path = write_chain(tmp_path, data_dir, shares=(1.0, 1.06, 1.12, 1.18))

    code = main(["compare", str(path), str(chain[-1]), "--summary", str(tmp_path / "summary.md")])

    summary = (tmp_path / "summary.md").read_text()
    assert code == 1 and "#### Against the anchor of " in summary and "(step 0)" in summary
    assert "- against the anchor of " in summary


# The anchor ratchets: an accepted improvement (or trade-off) is the state later drift is judged against.

def write_runs(folder: Path, data: Path, *, shares: tuple[float, ...]) -> list[Path]:
    """Runs in the baseline format, one per share (the bag of words' guesses `share` times further from the truth in
    log terms); the first is the baseline (baselines/classic.json), the others run files beside it."""
    from pricer.engines.classic import train_classic
    from pricer.engines.evaluate import score_run
    from pricer.engines.predict import Prediction
    from pricer.store.baselines import write_baseline
    from pricer.store.fingerprint import Fingerprint
    from pricer.task.items import DataSpec
    from pricer.task.load import load_items

    items = load_items(DataSpec(source=str(data), n=N))
    honest = train_classic("bow", load_items(DataSpec(source=str(data), split="train", n=None))).predict(items)
    fingerprint = Fingerprint(decisive={"predictor": "bow", "n": N})
    paths = []
    for step, share in enumerate(shares):
        guesses = [Prediction(guess=item.price * (p.guess / item.price) ** share, completion=None, parsed=True)
                   for item, p in zip(items, honest)]
        path = folder / "baselines" / "classic.json" if step == 0 else folder / f"step-{step}.json"
        write_baseline(path, run=score_run("bow", items, guesses), fingerprint=fingerprint, reason=f"step {step}",
                       previous=None)
        paths.append(path)
    return paths


def test_a_chain_of_accepted_steps_is_judged_against_the_best_state_accepted(tmp_path, data_dir, capsys):
    from pricer.cli.main import main
    from pricer.gate.compare import compare_run, read_run
    from pricer.gate.verdict import GateConfig

    baseline, adapter, tweak, second_tweak = write_runs(tmp_path, data_dir, shares=(1.6, 1.0, 1.08, 1.16))

    assert main(["accept", str(baseline), str(adapter), "--reason", "the adapter"]) == 0
    assert "judged better (" in capsys.readouterr().out
    assert main(["accept", str(baseline), str(tweak), "--reason", "a small tweak"]) == 0  # passes on its own
    assert "judged not worse" in capsys.readouterr().out
    assert read_baseline(baseline).anchor.reason == "the adapter"  # the improvement anchors, the tweak does not
    code = main(["compare", str(baseline), str(second_tweak)])

    out = capsys.readouterr().out
    assert code == 1, out
    date = read_baseline(baseline).anchor.date[:10]
    assert out.startswith(f"{baseline}: bow: FAILED: against the anchor of {date} (the adapter): Error is worse by"), out
    step = compare_run(read_baseline(baseline), read_run(second_tweak), GateConfig(), intervals=False).verdict
    assert not any(j.failed for j in step.judgements) and not step.large.failed  # the last step alone passes


def test_accepting_a_run_worse_than_the_anchor_needs_the_trade_off_and_then_anchors_there(tmp_path, data_dir, capsys):
    from pricer.cli.main import main

    baseline, adapter, tweak, second_tweak = write_runs(tmp_path, data_dir, shares=(1.6, 1.0, 1.08, 1.16))
    assert main(["accept", str(baseline), str(adapter), "--reason", "the adapter"]) == 0
    assert main(["accept", str(baseline), str(tweak), "--reason", "a small tweak"]) == 0
    capsys.readouterr()

    assert main(["accept", str(baseline), str(second_tweak), "--reason", "another tweak"]) == 2

    date = read_baseline(baseline).anchor.date[:10]
    assert (f"not replaced: {second_tweak} is WORSE than the anchor of {date} (the adapter), the best state accepted "
            "so far:") in capsys.readouterr().err
    assert main(["accept", str(baseline), str(second_tweak), "--reason", "another tweak",
                 "--accept-worse", "a shorter prompt"]) == 0
    assert read_baseline(baseline).anchor is None  # the trade-off is where drift is measured from now


def test_a_trade_off_accepted_on_purpose_anchors_with_its_reason(tmp_path, data_dir, capsys):
    from pricer.cli.main import main

    baseline, cheaper, same = write_runs(tmp_path, data_dir, shares=(1.0, 1.3, 1.3))

    assert main(["accept", str(baseline), str(cheaper), "--reason", "a smaller model",
                 "--accept-worse", "half the memory"]) == 0
    assert "drift is measured from this run on (the anchor)" in capsys.readouterr().out
    assert main(["accept", str(baseline), str(same), "--reason", "rerun"]) == 0

    assert read_baseline(baseline).anchor.reason == "a smaller model; accepted worse: half the memory"
