"""Real changes judged against the committed baselines: prompt templates a merge might bring, run through the model
and gated as the plugin gates them (same items, the baseline of this machine's class). Figures in docs/merges.md.

    python benchmarks/judge_merge.py --bits 32 --out benchmarks/results/judge-merge.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The course's data has one text column holding the whole prompt; a template can only wrap or cut it.
TEMPLATES = {
    "as committed (the text column)": None,
    "reworded: a line of framing before the prompt": "Product listing from an online shop.\n\n{text}",
    "worse: the prompt cut to its first 120 characters (question and part of the title)": "{text:.120}\n\nPrice is $",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bits", type=int, default=32)
    parser.add_argument("--adapter", default="adapters/smollm2-135m-pricer", help="'' for the base model")
    parser.add_argument("--data", default=None, help="default: $PRICER_DATA")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/judge-merge.json")
    parser.add_argument("--only", default="", help="run only the changes whose label contains this text; the other "
                        "rows of --out are kept")
    parser.add_argument("--save-runs", type=Path, default=None, metavar="DIR",
                        help="also store each change's run in the baseline format, for `pricer compare`")
    args = parser.parse_args()

    from pricer.gate.references import verdict_word
    from pricer.plugin.session import EvalSession
    from pricer.plugin.settings import EvalSettings
    from pricer.task.items import DataSpec, resolve_source

    kept = json.loads(args.out.read_text())["rows"] if args.only and args.out.exists() else []
    rows = [row for row in kept if args.only not in row["change"]]
    for label, template in TEMPLATES.items():
        if args.only not in label:
            continue
        settings = EvalSettings(data=DataSpec(source=resolve_source(args.data), template=template), bits=(args.bits,),
                                adapter=Path(args.adapter) if args.adapter else None, baselines=ROOT / "baselines")
        session = EvalSession(settings, root=ROOT)
        width = settings.widths[0]
        started = time.perf_counter()
        verdict = session.gates.check(width)
        row = {"change": label, "template": template, "width": width, "baseline": str(session.home.path(width).relative_to(ROOT)),
               "verdict": verdict_word(verdict), "passed": verdict.passed,
               "changed_guesses": sum(b.guess != p.guess for b, p in zip(session.gates.baseline(width).items,
                                                                        session.run(width).predictions)),
               "summary": verdict.summary_line(width), "seconds": round(time.perf_counter() - started, 1)}
        print(json.dumps(row, indent=2), flush=True)
        rows.append(row)
        if args.save_runs:
            print(f"run saved: {session.save_run(args.save_runs / label.split(':')[0], width)}")
        session.release(width)
    rows.sort(key=lambda row: list(TEMPLATES).index(row["change"]))
    args.out.write_text(json.dumps({"bits": args.bits, "adapter": args.adapter, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
