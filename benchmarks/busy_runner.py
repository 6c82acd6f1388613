"""Wall time of a pricer command idle and beside busy processes, with and without pricer's OpenMP wait policy.

Interleaved pairs: the default policy (PASSIVE) against the runtime's own waiting; the predictions must not change.

    python benchmarks/busy_runner.py [--rounds 3] [--busy 0,1,2] [--command "..."] [--before default|active]

A busy process is a Python loop that keeps one core busy (as another job on a shared runner does). "after" runs the
command as users do (pricer sets OMP_WAIT_POLICY=PASSIVE); "before" reproduces the OpenMP runtime's own waiting,
which pricer ran with until it set a policy: GOMP_SPINCOUNT=300000, libgomp's spin count when no policy is set
(libgomp is torch's runtime in its Linux wheels; the script records what the runtime read). `--before active`
forces OMP_WAIT_POLICY=ACTIVE instead, the longest spin. Each round runs every busy level, before and after back
to back, the pair's order alternating between rounds. `pricer eval` predictions are compared by its printed report
(NO_COLOR=1); a pytest command gets `--pricer-save-runs` and its stored guesses are compared. The data comes from
the environment ($PRICER_DATA). Time it on an otherwise quiet machine: other load adds to the busy processes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pricer.files import write_json
from pricer.options.parsers import positive_int

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_COMMAND = "pricer eval --model default --bits 32 --n 16 --no-charts"  # charts would land in the checkout
SPIN = "while True: pass"  # one busy core, as another job on the runner
SETTLE_SECONDS = 1.0  # let the busy processes start before the timed command
# What "before" sets: libgomp's spin count when OMP_WAIT_POLICY is unset (OMP_DISPLAY_ENV=VERBOSE shows 300000),
# which pricer's PASSIVE (spin count 0) replaced; an explicit GOMP_SPINCOUNT wins over the policy in libgomp.
BEFORE = {"default": {"GOMP_SPINCOUNT": "300000"}, "active": {"OMP_WAIT_POLICY": "ACTIVE"}}
POLICY_ENVS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_DISPLAY_ENV")


def environment(policy: str, *, before: str, base: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The command's environment: plain output, and the wait policy of `policy` ('before' or 'after')."""
    env = {k: v for k, v in base.items() if k not in POLICY_ENVS}
    env["NO_COLOR"] = "1"
    if policy == "before":
        env.update(BEFORE[before])
    return env


def runtime_settings(env: Mapping[str, str]) -> dict[str, str]:
    """How torch's OpenMP runtime reads this environment after pricer's entry points set their policy: its wait
    policy and spin count as it prints them while it loads (libgomp prints PASSIVE for an unset policy too: the spin
    count tells them apart)."""
    code = "import os; from pricer import cpu_threads; cpu_threads.apply(os.environ); import torch"
    done = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_DISPLAY_ENV": "VERBOSE"},
                          capture_output=True, text=True, timeout=300)
    settings = {}
    for line in done.stderr.splitlines():
        name, _, value = line.strip().partition(" = ")
        if name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS"):
            settings[name] = value.strip("'")
    return settings


def start_busy(count: int) -> list[subprocess.Popen]:
    """`count` processes that each keep a core busy until stopped."""
    return [subprocess.Popen([sys.executable, "-c", SPIN], stdin=subprocess.DEVNULL) for _ in range(count)]


def stop(processes: Sequence[subprocess.Popen]) -> None:
    for process in processes:
        process.kill()
    for process in processes:
        process.wait()


def run_once(command: Sequence[str], *, env: Mapping[str, str], busy: int, scratch: Path, label: str) -> dict[str, Any]:
    """Run the command beside `busy` busy processes: wall and CPU seconds, exit code, what it predicted."""
    argv = list(command)
    runs = None
    if is_pytest(argv):
        runs = scratch / label
        argv += ["--pricer-save-runs", str(runs)]
    spinners = start_busy(busy)
    try:
        time.sleep(SETTLE_SECONDS if busy else 0)
        load = os.getloadavg()[0]
        with (scratch / f"{label}.out").open("w+") as out, (scratch / f"{label}.err").open("w+") as err:
            start = time.perf_counter()
            process = subprocess.Popen(argv, cwd=ROOT, env=dict(env), stdout=out, stderr=err, stdin=subprocess.DEVNULL)
            # wait4 gives this command's own CPU time (its children's too), not the busy processes'.
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - start
            process.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            printed = out.read()
            err.seek(0)
            errors = err.read()
    finally:
        stop(spinners)
    return {
        "busy": busy, "wall_s": round(wall, 3), "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "exit_code": process.returncode, "load_before": round(load, 2),
        "predictions": predictions_digest(printed, runs),
        "output_tail": (printed + errors)[-400:] if process.returncode else "",
    }


def is_pytest(argv: Sequence[str]) -> bool:
    return any(Path(arg).name in ("pytest", "py.test") for arg in argv[:3])


def predictions_digest(printed: str, runs: Path | None) -> str | None:
    """A digest of what the command predicted: the stored runs' guesses, or `pricer eval`'s printed report; None
    when a pytest command stored no run (e.g. a missing baseline fails a width before it runs)."""
    if runs is None:
        return hashlib.sha256(printed.encode("utf-8")).hexdigest()[:16]
    from pricer.store.baselines import read_baseline

    guesses = []
    for path in sorted(runs.rglob("*.json")):
        stored = read_baseline(path)
        guesses.append(f"{path.relative_to(runs)}: " + ";".join(f"{i.index}={i.guess!r}/{i.completion!r}"
                                                                  for i in stored.items))
    return hashlib.sha256("\n".join(guesses).encode("utf-8")).hexdigest()[:16] if guesses else None


def summarize(runs: Sequence[Mapping[str, Any]], busy_levels: Sequence[int]) -> dict[str, Any]:
    """Medians per policy and busy level; busy/idle per policy; after/before per busy level, pair by pair."""
    def walls(policy: str, busy: int) -> list[float]:
        return [r["wall_s"] for r in runs if r["policy"] == policy and r["busy"] == busy]

    median = {policy: {str(b): statistics.median(walls(policy, b)) for b in busy_levels if walls(policy, b)}
              for policy in ("before", "after")}
    busy_over_idle = {policy: {b: round(m / median[policy]["0"], 3) for b, m in levels.items() if b != "0"}
                      for policy, levels in median.items() if "0" in levels}
    after_over_before = {}
    for busy in busy_levels:
        pairs = {}
        for r in runs:
            if r["busy"] == busy:
                pairs.setdefault(r["round"], {})[r["policy"]] = r["wall_s"]
        ratios = [p["after"] / p["before"] for p in pairs.values() if len(p) == 2]
        if ratios:
            after_over_before[str(busy)] = {"median": round(statistics.median(ratios), 3),
                                            "min": round(min(ratios), 3), "max": round(max(ratios), 3)}
    cpu = {policy: {str(b): statistics.median([r["cpu_s"] for r in runs if r["policy"] == policy and r["busy"] == b])
                    for b in busy_levels if walls(policy, b)} for policy in ("before", "after")}
    return {"median_wall_s": median, "median_cpu_s": cpu, "busy_over_idle": busy_over_idle,
            "after_over_before": after_over_before,
            "same_predictions": len({r["predictions"] for r in runs}) == 1 and runs[0]["predictions"] is not None,
            "exit_codes": sorted({r["exit_code"] for r in runs})}


def main(argv: Sequence[str] | None = None) -> int:
    """Warm up, time every busy level before and after for each round, print and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--command", default=DEFAULT_COMMAND, metavar="COMMAND",
                        help="the command to time, run in the repository root, e.g. 'pytest -m eval --pricer-bits 32 "
                        "--pricer-n 16'. Default: %(default)r")
    parser.add_argument("--rounds", type=positive_int("--rounds"), default=3, metavar="N",
                        help="rounds; each times every busy level before and after. Default: %(default)r")
    parser.add_argument("--busy", default="0,1,2", metavar="LIST",
                        help="numbers of busy processes beside the command; 0 is idle and is needed for the busy/idle "
                        "ratios. Default: %(default)s")
    parser.add_argument("--before", choices=sorted(BEFORE), default="default",
                        help="how threads waited before: the runtime's default spin, or ACTIVE. Default: %(default)s")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed first run (model conversion, "
                        "file cache)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/busy-runner.json"), metavar="PATH",
                        help="Default: %(default)s")
    args = parser.parse_args(argv)
    try:
        busy_levels = sorted({int(b) for b in args.busy.split(",")})
    except ValueError:
        parser.error(f"--busy: {args.busy!r} is not a list of whole numbers, e.g. 0,1,2")
    if any(b < 0 for b in busy_levels):
        parser.error(f"--busy: {args.busy!r} has a negative count")
    command = shlex.split(args.command)
    beside = Path(sys.executable).parent / command[0]  # this environment's `pricer`/`pytest`, activated or not
    if beside.is_file():
        command[0] = str(beside)
    envs = {policy: environment(policy, before=args.before) for policy in ("before", "after")}
    settings = {policy: runtime_settings(env) for policy, env in envs.items()}
    print(f"OpenMP as the runtime read it: {settings}", file=sys.stderr, flush=True)

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="pricer-busy-") as folder:
        scratch = Path(folder)
        if not args.no_warmup:
            print(f"warm-up (untimed): {args.command}", file=sys.stderr, flush=True)
            run_once(command, env=envs["after"], busy=0, scratch=scratch, label="warmup")
        for round_ in range(args.rounds):
            for busy in busy_levels:
                # Pairs alternate their order, so a machine drifting within a round favours neither policy.
                for policy in ("before", "after") if (round_ + busy) % 2 == 0 else ("after", "before"):
                    run = run_once(command, env=envs[policy], busy=busy, scratch=scratch,
                                   label=f"r{round_}-b{busy}-{policy}")
                    runs.append({"round": round_, "policy": policy, **run})
                    print(f"round {round_ + 1}/{args.rounds} busy {busy} {policy:>6}: {run['wall_s']:7.1f} s wall "
                          f"{run['cpu_s']:7.1f} s CPU, load {run['load_before']:.1f}, exit {run['exit_code']}, "
                          f"predictions {run['predictions']}", file=sys.stderr, flush=True)
    summary = summarize(runs, busy_levels)
    for policy, ratios in summary["busy_over_idle"].items():
        if ratios:
            print(f"{policy:>6}: busy/idle wall " + ", ".join(f"{b} busy x{r:.2f}" for b, r in ratios.items()))
    for busy, ratio in summary["after_over_before"].items():
        print(f"{busy} busy: after/before wall x{ratio['median']:.2f} (pairs x{ratio['min']:.2f}-x{ratio['max']:.2f})")
    print(f"same predictions: {'yes' if summary['same_predictions'] else 'NO (or none stored: see output_tail)'}")
    write_json(args.out, {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")},
        "command": args.command, "rounds": args.rounds, "busy_levels": busy_levels, "before": args.before,
        "before_env": BEFORE[args.before], "runtime": settings, "runs": runs, **summary,
    })
    print(f"wrote {args.out}")
    return 0 if summary["same_predictions"] else 1


if __name__ == "__main__":
    sys.exit(main())
