"""Time the endpoint path against the in-process path on the same model and items, as ratios from one run.

    python benchmarks/endpoint_speed.py --n 16 --data PATH [--out benchmarks/results/endpoint-speed.json]

In-process: the default model at 32 bits, token-budget batches (the gate's default), on --threads torch threads
(default 1, as the server gets: on a busy 2-core machine two spinning OpenMP threads made a request 10x slower). Served: the same model by
`transformers serve` (float32, one OpenMP thread) on 127.0.0.1, asked at concurrency 1, 4 and 16 with an empty
answer store each time, so every item is asked. Each path answers one item first, untimed (the server's first
request and the first generate call are slow). The ratio is a path's seconds over the in-process seconds.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from pricer.engines.endpoint.config import EndpointConfig
from pricer.engines.endpoint.predictor import EndpointPredictor
from pricer.engines.endpoint.serve import SERVED_ID, ServedModel
from pricer.engines.predict import LLMPredictor
from pricer.engines.transformers.loading import load_model
from pricer.files import write_json
from pricer.options.parsers import positive_int
from pricer.task.items import DataSpec, resolve_source
from pricer.task.load import load_items

CONCURRENCIES = (1, 4, 16)


def served_seconds(url: str, prompts: Sequence[str], *, concurrency: int) -> tuple[float, list[str]]:
    """Seconds to ask every prompt at this concurrency from an empty store, and the answers."""
    with tempfile.TemporaryDirectory() as store:
        config = EndpointConfig(urls=(("32bit", url),), model=SERVED_ID, concurrency=concurrency, store=Path(store))
        predictor = EndpointPredictor(config, width="32bit")
        start = time.perf_counter()
        texts = predictor.complete(prompts)
        return time.perf_counter() - start, texts


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print one line per path and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=positive_int("--n"), default=16, metavar="N", help="items to time. Default: %(default)r")
    parser.add_argument("--data", metavar="PATH", help="data folder or file. Default: $PRICER_DATA, else the hub dataset")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/endpoint-speed.json"), metavar="PATH",
                        help="Default: %(default)s")
    parser.add_argument("--threads", type=positive_int("--threads"), default=1, metavar="N",
                        help="torch CPU threads of the in-process run (the server runs one). Default: %(default)r")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)

    items = load_items(DataSpec(source=resolve_source(args.data), n=args.n + 1))
    warm, prompts = items[0].prompt, [item.prompt for item in items[1:]]
    load_before = os.getloadavg()

    loaded = load_model("default", bits=32)
    local = LLMPredictor(loaded)
    local.complete([warm])
    print(f"in-process: timing {len(prompts)} items ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    reference = local.complete(prompts)
    in_process = time.perf_counter() - start
    loaded.close()

    rows = [{"path": "in-process", "concurrency": None, "seconds": round(in_process, 3), "ratio": 1.0,
             "differ": 0}]
    with tempfile.TemporaryDirectory() as folder:
        server = ServedModel(Path(folder))
        server.start()
        try:
            served_seconds(server.url, [warm], concurrency=1)
            for concurrency in CONCURRENCIES:
                print(f"served: timing {len(prompts)} items at concurrency {concurrency} ...", file=sys.stderr,
                      flush=True)
                seconds, texts = served_seconds(server.url, prompts, concurrency=concurrency)
                rows.append({"path": "served", "concurrency": concurrency, "seconds": round(seconds, 3),
                             "ratio": round(seconds / in_process, 3),
                             "differ": sum(a != b for a, b in zip(texts, reference))})
        finally:
            server.kill()

    load_after = os.getloadavg()
    print(f"{len(prompts)} items; load average {load_before[0]:.1f} -> {load_after[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'path':>10} {'concurrency':>11} {'s/item':>7} {'x in-process':>13} {'answers differ':>15}")
    for row in rows:
        print(f"{row['path']:>10} {row['concurrency'] or '-':>11} {row['seconds'] / len(prompts):>7.3f} "
              f"{row['ratio']:>13.2f} {row['differ']:>15}")
    write_json(args.out, {"n": len(prompts), "model": SERVED_ID, "bits": 32, "rows": rows, "threads": args.threads,
                          "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                          "load_average": [round(load_before[0], 2), round(load_after[0], 2)],
                          "command": "python benchmarks/endpoint_speed.py " + " ".join(argv or sys.argv[1:])})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
