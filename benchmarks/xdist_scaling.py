"""Wall time and peak memory of the eval gate run serially and with pytest-xdist workers, in one run of this script.

    python benchmarks/xdist_scaling.py [--n 250] [--bits 4,8,16,32] [--workers 2] [--out PATH]

Both timed runs are `pytest -m eval` of the default model in this repository, the second with `-n WORKERS`; they gate
the stored baselines at n=250, and at another --n baselines that this script first writes (serially, untimed) into a
temporary folder, so that both runs gate, and by the same files. Peak memory is the summed resident memory of the
pytest process and its workers, sampled every 0.1 s; the largest single process's peak is given beside it. Torch
threads are left to each run: torch's default serially, the cores shared out among workers under -n (pricer.plugin.workers).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pricer.files import write_json
from pricer.options.parsers import bits_list, positive_int

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_SECONDS = 0.1  # RSS sampling period: a width's model stays loaded for seconds, far longer


def pytest_command(*, n: int, bits: Sequence[int], workers: int | None, baselines: Path | None,
                   extra: Sequence[str] = ()) -> list[str]:
    """`pytest -m eval` over the repository's own tests/test_eval.py."""
    command = [sys.executable, "-m", "pytest", "tests/test_eval.py", "-m", "eval", "-p", "no:cacheprovider",
               "--pricer-n", str(n), "--pricer-bits", ",".join(map(str, bits))]
    if baselines is not None:
        command += ["--pricer-baselines", str(baselines)]
    if workers:
        command += ["-n", str(workers)]
    return command + list(extra)


def measure(command: Sequence[str]) -> dict[str, Any]:
    """Run the command; its wall time, exit code, 'pricer gate' lines and peak memory of its process tree."""
    import psutil

    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks = {"tree": 0, "processes": 0}
    done = threading.Event()

    def sample() -> None:
        root = psutil.Process(process.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                rss = [p.memory_info().rss for p in tree]
            except psutil.Error:  # a worker exited between listing and reading
                continue
            peaks["tree"] = max(peaks["tree"], sum(rss))
            peaks["processes"] = max(peaks["processes"], len(tree))
            done.wait(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    return {
        "command": " ".join(command[1:]).replace(str(ROOT) + os.sep, ""),
        "exit_code": process.returncode,
        "wall_s": round(wall, 2),
        "peak_rss_tree_mb": round(peaks["tree"] / 2**20, 1),
        "processes": peaks["processes"],
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "outcomes": _outcomes(output),
        "gate_lines": _section(output, "pricer gate"),
    }


def _section(output: str, name: str) -> list[str]:
    lines = output.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if re.fullmatch(rf"=+ {name} =+", line))
    except StopIteration:
        return []
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("=")), len(lines))
    return lines[start + 1:end]


def _outcomes(output: str) -> str:
    last = [line for line in output.splitlines() if re.match(r"=+ .* in [\d.]+s", line)]
    return last[-1].strip("= ") if last else output[-2000:]


def main(argv: Sequence[str] | None = None) -> int:
    """Make baselines if needed, time the serial run and the -n run, print and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=positive_int("--n"), default=250, metavar="N", help="items. Default: %(default)r")
    parser.add_argument("--bits", type=bits_list("--bits"), default=(4, 8, 16, 32), metavar="LIST",
                        help="widths, e.g. 4,32. Default: 4,8,16,32")
    parser.add_argument("--workers", type=positive_int("--workers"), default=2, metavar="N",
                        help="xdist workers of the second run. Default: %(default)r")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/xdist-cpu.json"), metavar="PATH",
                        help="Default: %(default)s")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="pricer-xdist-") as scratch:
        baselines = None
        if args.n != 250:  # the stored baselines are of 250 items: gate against baselines of this n
            baselines = Path(scratch) / "baselines"
            print(f"writing baselines of {args.n} items into {baselines} (untimed) ...", file=sys.stderr, flush=True)
            made = measure(pytest_command(n=args.n, bits=args.bits, workers=None, baselines=baselines,
                                          extra=("--update-baselines", "--pricer-reason", "xdist_scaling.py")))
            if not any(baselines.rglob("*.json")):
                print(f"could not write baselines: {made['outcomes']}", file=sys.stderr)
                return 1
        runs = {}
        for label, workers in (("serial", None), (f"n{args.workers}", args.workers)):
            print(f"{label}: pytest -m eval, {len(args.bits)} widths, {args.n} items ...", file=sys.stderr, flush=True)
            runs[label] = measure(pytest_command(n=args.n, bits=args.bits, workers=workers, baselines=baselines))

    serial, spread = runs["serial"], runs[f"n{args.workers}"]
    # The "models loaded" line names the workers under -n; every verdict and ladder line must be the same.
    def verdicts(lines: list[str]) -> list[str]:
        return [line for line in lines if line.strip() and not line.startswith("models loaded")]

    same = verdicts(serial["gate_lines"]) == verdicts(spread["gate_lines"])
    for label, run in runs.items():
        print(f"{label:>7}: {run['wall_s']:8.1f} s  peak {run['peak_rss_tree_mb']:8.1f} MB over {run['processes']} "
              f"processes  load {run['load_average_before']:.1f} -> {run['load_average_after']:.1f}  {run['outcomes']}")
    print(f"-n {args.workers} vs serial: wall x{spread['wall_s'] / serial['wall_s']:.2f}, "
          f"peak memory x{spread['peak_rss_tree_mb'] / serial['peak_rss_tree_mb']:.2f}; "
          f"same gate lines: {'yes' if same else 'no'}")
    write_json(args.out, {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")},
        "n": args.n, "bits": list(args.bits), "workers": args.workers,
        "baselines": "stored" if baselines is None else f"made by this script at n={args.n}",
        "runs": runs,
        "wall_ratio": round(spread["wall_s"] / serial["wall_s"], 3),
        "peak_memory_ratio": round(spread["peak_rss_tree_mb"] / serial["peak_rss_tree_mb"], 3),
        "same_gate_lines": same,
    })
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
