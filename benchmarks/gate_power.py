"""How sensitive and how quiet the gate is on a stored baseline: false alarms over simulated no-change
runs, and the smallest worsening caught 95% of the time (both at the baseline's n)."""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from pricer.engines.evaluate import score_run
from pricer.engines.predict import Prediction
from pricer.files import write_json
from pricer.gate.verdict import GateConfig, compare
from pricer.store.baselines import read_baseline
from pricer.task.items import Item

FLIP_SHARE = 0.22  # 14 of 64 items changed between batch 1 and batch 8 at 8 bits in one probe
FLIP_SPREAD = (0.8, 1.25)  # a flipped greedy decode lands on a nearby price, as often below as above
PUSHED_SHARE = 0.3  # a regression that hurts a third of the items


def runs_from(baseline):
    items = [Item(index=b.index, prompt=f"item {b.index}", price=b.truth, title=b.title) for b in baseline.items]
    guesses = [b.guess for b in baseline.items]
    return items, guesses


def noisy(guesses, rng):
    return [g * rng.choice(FLIP_SPREAD) if rng.random() < FLIP_SHARE else g for g in guesses]


def pushed(guesses, items, strength, rng):
    out = []
    for g, item in zip(guesses, items):
        if rng.random() < PUSHED_SHARE:
            g = g + strength * item.price if g >= item.price else max(g - strength * item.price, 0.0)
        out.append(g)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("baseline", type=Path, help="a stored baseline file")
    parser.add_argument("--runs", type=int, default=200, help="simulated runs per setting. Default: %(default)s")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)

    baseline = read_baseline(args.baseline)
    items, guesses = runs_from(baseline)
    fingerprint = baseline.fingerprint
    config = GateConfig()
    rng = random.Random(0)

    def fails(new_guesses) -> bool:
        run = score_run(baseline.name, items, [Prediction(guess=g) for g in new_guesses])
        return not compare(baseline, run, fingerprint, config).passed

    false_alarms = sum(fails(noisy(guesses, rng)) for _ in range(args.runs))
    print(f"{args.baseline}: n={len(items)} Error=${baseline.metrics['error']:,.2f}")
    print(f"false alarms over {args.runs} no-change runs ({FLIP_SHARE:.0%} of items flipped): "
          f"{false_alarms} ({false_alarms / args.runs:.1%})")
    detection = []
    for strength in (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0):
        worsening, caught = [], 0
        for _ in range(args.runs):
            new = pushed(guesses, items, strength, rng)
            run = score_run(baseline.name, items, [Prediction(guess=g) for g in new])
            worsening.append(run.metrics.error / baseline.metrics["error"] - 1)
            caught += not compare(baseline, run, fingerprint, config).passed
        mean_worsening = sum(worsening) / len(worsening)
        detection.append({"strength": strength, "worsening": mean_worsening, "caught": caught / args.runs})
        print(f"push {strength:.0%} of truth on {PUSHED_SHARE:.0%} of items: Error +{mean_worsening:.1%}, "
              f"caught {caught / args.runs:.1%}")
    caught_95 = [d["worsening"] for d in detection if d["caught"] >= 0.95]
    smallest = min(caught_95) if caught_95 else None
    print(f"smallest worsening caught 95% of the time: "
          + (f"+{smallest:.1%} of Error" if smallest is not None else "none of those tried"))
    if args.out:
        write_json(args.out, {"baseline": str(args.baseline), "n": len(items), "runs": args.runs,
                              "false_alarm_rate": false_alarms / args.runs, "detection": detection,
                              "smallest_caught_95": smallest})
    return 0


if __name__ == "__main__":
    sys.exit(main())
