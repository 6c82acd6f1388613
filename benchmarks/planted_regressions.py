"""Planted regressions and no-change runs on the committed baselines: caught / runs for the old verdict (the paired
Error test alone) and the new one (every course measure, Holm-corrected; also under the cross-class rule).
Writes benchmarks/results/planted-regressions.json and prints the tables in docs/gate.md."""

from __future__ import annotations

import argparse
import bisect
import json
import math
import random
import sys
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pricer.engines.predict import Prediction
from pricer.files import write_json
from pricer.gate.compare import RunFile, compare_run
from pricer.gate.measures import RESAMPLES, SEED
from pricer.gate.verdict import GateConfig
from pricer.store.baselines import Baseline, read_baseline
from pricer.task.metrics import score_item

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = "cpu-bfloat16"  # the class the stored baselines were made in (an AVX512-BF16 CPU)
MODELS = {"smollm2-135m-instruct": "base", "smollm2-135m-instruct-smollm2-135m-pricer": "fine-tuned"}
NOISE_SHARE = (0.15, 0.40)  # 41-104 of 250 guesses (16-42%) differed between the H100 and the CPU
# Without a committed second class to resample flips from: a flipped greedy decode lands on a nearby price.
FALLBACK_FLIPS = (math.log(0.8), math.log(1.25))

Guesses = tuple[list[float], list[bool]]


def _share(guesses, parsed, rng, share, change):
    chosen = set(rng.sample(range(len(guesses)), round(share * len(guesses))))
    out = [change(g) if i in chosen else g for i, g in enumerate(guesses)]
    return out, list(parsed), chosen


def unparsed(guesses, parsed, truths, rng) -> Guesses:
    out, flags, chosen = _share(guesses, parsed, rng, 0.10, lambda g: 0.0)
    return out, [False if i in chosen else p for i, p in enumerate(flags)]


def rotated(guesses, parsed, truths, rng) -> Guesses:
    k = rng.randrange(1, len(guesses))
    return guesses[k:] + guesses[:k], parsed[k:] + parsed[:k]


def batch_misaligned(guesses, parsed, truths, rng) -> Guesses:
    """Ours: a padding bug that hands each batch of 8 its guesses one place off (rotation within batches)."""
    out, flags = [], []
    for start in range(0, len(guesses), 8):
        g, p = guesses[start:start + 8], parsed[start:start + 8]
        out += g[1:] + g[:1]
        flags += p[1:] + p[:1]
    return out, flags


def constant(guesses, parsed, truths, rng) -> Guesses:
    return _share(guesses, parsed, rng, 0.30, lambda g: 36.0)[:2]


def halved(guesses, parsed, truths, rng) -> Guesses:
    return _share(guesses, parsed, rng, 0.30, lambda g: g / 2)[:2]


def tripled(guesses, parsed, truths, rng) -> Guesses:
    return _share(guesses, parsed, rng, 0.20, lambda g: 3 * g)[:2]


def digits_cut(guesses, parsed, truths, rng) -> Guesses:
    """Ours: too few new tokens cut the last digit of 20% of the prices ("129.99" -> "12")."""
    return _share(guesses, parsed, rng, 0.20, lambda g: float(int(g) // 10))[:2]


def drift(guesses, parsed, truths, rng) -> Guesses:
    return [1.15 * g for g in guesses], list(parsed)


def answers(count: int | float, change: Callable[[float], float]) -> Callable[..., Guesses]:
    """A rare catastrophe: `count` answers (a share when below 1) of random items take `change`."""

    def plant(guesses, parsed, truths, rng) -> Guesses:
        k = count if count >= 1 else round(count * len(guesses))
        chosen = set(rng.sample(range(len(guesses)), int(k)))
        return [change(g) if i in chosen else g for i, g in enumerate(guesses)], list(parsed)

    return plant


# Rare catastrophes, which the paired tests cannot see (fewer than ~7 changed items), Error's trimmed mean cuts, and
# the large-moves rule and the plain mean are there for.
CATASTROPHES: dict[str, Callable[..., Guesses]] = {
    "1 answer becomes $99,999": answers(1, lambda g: 99_999.0),
    "2 answers become $99,999": answers(2, lambda g: 99_999.0),
    "3 answers become $99,999": answers(3, lambda g: 99_999.0),
    "5 answers become $99,999": answers(5, lambda g: 99_999.0),
    "5% of answers become $99,999": answers(0.05, lambda g: 99_999.0),
    "2 answers x100": answers(2, lambda g: 100 * g),
    "3 answers x100": answers(3, lambda g: 100 * g),
    "5 answers x100": answers(5, lambda g: 100 * g),
    "3 answers x10": answers(3, lambda g: 10 * g),
    "5 answers x40": answers(5, lambda g: 40 * g),
    "4% of answers x10": answers(0.04, lambda g: 10 * g),
    # 2%, 5% and 10% of answers at x3, x10 and a fixed implausible price ($999 for items that mostly cost $10-$200).
    **{f"{share:.0%} of answers {what}": answers(share, change) for what, change in (
        ("x3", lambda g: 3 * g), ("x10", lambda g: 10 * g), ("become $999", lambda g: 999.0))
       for share in (0.02, 0.05, 0.10)},
}

PLANTED: dict[str, Callable[..., Guesses]] = {
    "10% of completions stop containing a price (guess 0, unparsed)": unparsed,
    "guesses rotated among items": rotated,
    "guesses one place off within each batch of 8 (ours)": batch_misaligned,
    "30% of guesses collapse to $36": constant,
    "30% of guesses halved": halved,
    "20% of guesses tripled": tripled,
    "20% of prices lose their last digit (ours)": digits_cut,
    "every guess x1.15 (drift)": drift,
    **CATASTROPHES,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Stored:
    """The committed baselines of one model and width, by hardware class."""

    model: str
    width: str
    classes: dict[str, Baseline]

    @property
    def reference(self) -> Baseline:
        return self.classes[REFERENCE]


def committed(root: Path) -> list[Stored]:
    """baselines/<model>/<class>/<bits>bit.json; a file directly in <model>/ belongs to the reference class."""
    found: dict[tuple[str, str], dict[str, Baseline]] = {}
    for model in MODELS:
        for path in sorted((root / model).glob("*bit.json")) + sorted((root / model).glob("*/*bit.json")):
            cls = REFERENCE if path.parent.name == model else path.parent.name
            found.setdefault((model, path.stem), {})[cls] = read_baseline(path)
    return [Stored(model=m, width=w, classes=c) for (m, w), c in sorted(found.items()) if REFERENCE in c]


def flip_pool(stored: list[Stored]) -> dict[str, list[tuple[float, float]]]:
    """Per model: (signed log error, move) of every real guess that differs between two hardware classes, both
    ways round, sorted by the error. Both ways, because neither class is the better one: a flip's move depends
    on how far the guess was (a $100,000 guess flips back to a sane one), and so the pool is exchangeable."""
    pool: dict[str, list[tuple[float, float]]] = {}
    for s in stored:
        for cls, other in s.classes.items():
            if cls == REFERENCE:
                continue
            for r, o in zip(s.reference.items, other.items):
                if abs(o.guess - r.guess) > 1e-6:
                    e_ref, e_other = (math.log1p(x.guess) - math.log1p(x.truth) for x in (r, o))
                    pool.setdefault(s.model, []).extend([(e_ref, e_other - e_ref), (e_other, e_ref - e_other)])
    return {model: sorted(pairs) for model, pairs in pool.items()}


def fallback_pool(stored: list[Stored], model: str) -> list[tuple[float, float]]:
    """Without a second class committed: each guess flips x0.8 or x1.25, both ways round as in flip_pool."""
    pairs = []
    for s in (s for s in stored if s.model == model):
        for x in s.reference.items:
            e = math.log1p(x.guess) - math.log1p(x.truth)
            for move in FALLBACK_FLIPS:
                pairs += [(e, move), (e + move, -move)]
    return sorted(pairs)


def noisy(guesses, parsed, truths, pool: list[tuple[float, float]], rng) -> Guesses:
    """A no-change rerun: a random 15-40% of items take a real flip's move. Each move is drawn from the pool
    first, then lands on the not yet moved item nearest in signed log error to the guess it was made from: so the
    moved items are as far from their truths as real flips were, and better or worse alike (moving random items
    instead makes good guesses worse more often than bad ones better, which no real rerun showed)."""
    share = rng.uniform(*NOISE_SHARE)
    out = list(guesses)
    free = sorted((math.log1p(g) - math.log1p(t), i) for i, (g, t) in enumerate(zip(guesses, truths)))
    for _ in range(round(share * len(out))):
        e, move = pool[rng.randrange(len(pool))]
        at = bisect.bisect_left(free, (e, -1))
        nearest = min((j for j in (at - 1, at) if 0 <= j < len(free)), key=lambda j: abs(free[j][0] - e))
        _, i = free.pop(nearest)
        out[i] = max(math.expm1(math.log1p(out[i]) + move), 0.0)
    return out, list(parsed)


def as_run(baseline: Baseline, guesses: list[float], parsed: list[bool], name: str) -> RunFile:
    # Beside its baseline, in its class folder: the class is the folder's (a fingerprint's compute dtype at 8 and 32
    # bits is the width's, so judged by it alone a same-class run would be taken for another class).
    return RunFile(path=baseline.path.parent / name, name=name, fingerprint=baseline.fingerprint,
                   predictions={b.index: Prediction(guess=g, parsed=p) for b, g, p in zip(baseline.items, guesses, parsed)})


def old_fails(baseline: Baseline, guesses: list[float]) -> bool:
    """The verdict before issue 10: paired Error, p < 0.05 and the mean worsening above 5% of Error; its
    permutation test exactly as gate.paired_delta runs it (same seed, all items), without the CI it never used."""
    import numpy as np
    from scipy import stats

    before = np.array([score_item(b.guess, b.truth).error for b in baseline.items])
    diffs = np.array([abs(g - b.truth) for b, g in zip(baseline.items, guesses)]) - before
    diffs[np.abs(diffs) < 1e-5] = 0.0
    if not diffs.mean() > 0.05 * before.mean():  # within the tolerance: passes whatever p is
        return False
    p = stats.permutation_test((diffs,), np.mean, permutation_type="samples", alternative="greater",
                               n_resamples=RESAMPLES, rng=np.random.default_rng(SEED)).pvalue
    return bool(p < 0.05)


def judge_run(baseline: Baseline, run: RunFile, config: GateConfig, *, cross_class: bool) -> dict:
    verdict = compare_run(baseline, run, config, cross_class=cross_class, intervals=False).verdict
    tail = verdict.tail is not None and verdict.tail.failed
    large = verdict.large is not None and verdict.large.failed
    return {"failed": not verdict.passed,
            "beyond": any(j.beyond_tolerance for j in verdict.judgements) or tail or large,
            "measures": [j.measure.name for j in verdict.judgements if j.failed] + (["tail"] if tail else [])
                        + (["large moves"] if large else [])}


def seeded(*parts: str) -> random.Random:
    return random.Random(zlib.crc32("/".join(parts).encode()))


def planted_rows(stored: list[Stored], config: GateConfig, *, runs: int, cross: bool = True, old: bool = True,
                 kinds: tuple[str, ...] = tuple(PLANTED), every_class: tuple[str, ...] = tuple(CATASTROPHES)) -> list[dict]:
    """One row per planted kind, model and class: runs where a measure moved beyond its tolerance (or the tail past
    its budget), and runs caught, counted over every planted run. Kinds in `every_class` are planted into every
    committed class's baselines; the others into the reference class's only."""
    rows = []
    for kind in kinds:
        plant = PLANTED[kind]
        for model, label in MODELS.items():
            classes = sorted({c for s in stored if s.model == model for c in s.classes}) if kind in every_class \
                else [REFERENCE]
            for cls in classes:
                row = {"kind": kind, "model": label, "class": cls, "runs": 0, "beyond": 0, "old": 0, "new": 0,
                       "cross_beyond": 0, "cross": 0, "caught_by": {}}
                for s in (s for s in stored if s.model == model and cls in s.classes):
                    b = s.classes[cls]
                    rng = seeded(kind, model, s.width) if cls == REFERENCE else seeded(kind, model, s.width, cls)
                    for r in range(runs):
                        guesses, parsed = plant([x.guess for x in b.items], [x.parsed for x in b.items],
                                                [x.truth for x in b.items], rng)
                        run = as_run(b, guesses, parsed, f"{s.width}-planted-{r}")
                        new = judge_run(b, run, config, cross_class=False)
                        row["runs"] += 1
                        row["beyond"] += new["beyond"]
                        row["new"] += new["failed"]
                        row["old"] += old and old_fails(b, guesses)
                        for name in new["measures"]:
                            row["caught_by"][name] = row["caught_by"].get(name, 0) + 1
                        if cross:
                            across = judge_run(b, run, config, cross_class=True)
                            row["cross_beyond"] += across["beyond"]
                            row["cross"] += across["failed"]
                rows.append(row)
                print(_line(row), file=sys.stderr)
    return rows


@dataclass(frozen=True, slots=True, kw_only=True)
class Rerun:
    """A real rerun of a committed baseline's model and width, made elsewhere: its source and hardware class."""

    source: str  # e.g. "H100", "AMD EPYC, AVX2"
    hardware_class: str
    model: str
    width: str
    baseline: Baseline


def read_reruns(spec: str) -> list[Rerun]:
    """LABEL:CLASS:DIR, DIR holding <model>/<width>.json or <model>/<class>/<width>.json (--pricer-save-runs)."""
    label, hardware_class, folder = spec.split(":", 2)
    found = []
    for model in MODELS:
        for path in sorted(Path(folder, model).glob("*bit.json")) + sorted(Path(folder, model).glob("*/*bit.json")):
            found.append(Rerun(source=label, hardware_class=hardware_class, model=model, width=path.stem,
                               baseline=read_baseline(path)))
    return found


def committed_reruns(root: Path) -> list[str]:
    """benchmarks/reruns/<label>/<class>/: reruns this project made itself (another CPU, another batching)."""
    return [f"{folder.name}:{cls.name}:{cls}" for folder in sorted(root.glob("*/")) if folder.is_dir()
            for cls in sorted(folder.glob("*/")) if cls.is_dir()]


def _as_rerun(rerun: Baseline, name: str, hardware_class: str | None = None) -> RunFile:
    path = Path(hardware_class) / rerun.path.name if hardware_class else rerun.path  # a folder named by its class
    return RunFile(path=path, name=name, fingerprint=rerun.fingerprint,
                   predictions={x.index: Prediction(guess=x.guess, completion=x.completion, parsed=x.parsed)
                                for x in rerun.items},
                   truths={x.index: x.truth for x in rerun.items})


def _count(row: dict, result: dict) -> None:
    row["runs"] += 1
    row["new"] += result["failed"]
    for name in result["measures"]:
        row["caught_by"][name] = row["caught_by"].get(name, 0) + 1


def quiet_rows(stored: list[Stored], config: GateConfig, *, noise_runs: int, old: bool = True,
               reruns: list[Rerun] = ()) -> list[dict]:
    """No-change runs: identical reruns, simulated flips, every committed class gated against every other both ways
    (cross-class rule), and real reruns made elsewhere against every class (same-class rule on their own class)."""
    pool = flip_pool(stored)
    rows = []
    for model, label in MODELS.items():
        mine = [s for s in stored if s.model == model]
        moves = pool.get(model) or fallback_pool(stored, model)
        identical = {"kind": "identical rerun, every class", "model": label, "runs": 0, "old": 0, "new": 0,
                     "max_p_holm_below_1": 0, "caught_by": {}}
        noise = {"kind": "simulated hardware flips (15-40% of guesses), every class", "model": label, "runs": 0,
                 "old": 0, "new": 0, "flips_from": "real reruns" if pool.get(model) else "x0.8 / x1.25", "caught_by": {}}
        across = {"kind": "committed classes against each other, both ways, cross-class rule", "model": label,
                  "runs": 0, "old": 0, "new": 0, "same_class_rule": 0, "caught_by": {}}
        elsewhere: dict[tuple[str, bool], dict] = {}
        for s in mine:
            for cls, b in sorted(s.classes.items()):
                guesses, parsed = [x.guess for x in b.items], [x.parsed for x in b.items]
                verdict = compare_run(b, as_run(b, guesses, parsed, f"{s.width}-identical"), config,
                                      intervals=False).verdict
                _count(identical, {"failed": not verdict.passed, "measures": []})
                identical["old"] += old and old_fails(b, guesses)
                identical["max_p_holm_below_1"] += any(j.p_holm < 1 for j in verdict.judgements)
                rng = seeded("noise", model, s.width) if cls == REFERENCE else seeded("noise", model, s.width, cls)
                for r in range(noise_runs):
                    g, p = noisy(guesses, parsed, [x.truth for x in b.items], moves, rng)
                    _count(noise, judge_run(b, as_run(b, g, p, f"{s.width}-noise-{r}"), config, cross_class=False))
                    noise["old"] += old and old_fails(b, g)
                for other_cls, other in sorted(s.classes.items()):
                    if other_cls == cls:
                        continue
                    run = _as_rerun(other, f"{s.width} {other_cls}")
                    _count(across, judge_run(b, run, config, cross_class=True))
                    if old:  # for the table: would the same-class rule have passed them too?
                        across["same_class_rule"] += judge_run(b, run, config, cross_class=False)["failed"]
                    across["old"] += old and old_fails(b, [x.guess for x in other.items])
                for rerun in (r for r in reruns if r.model == model and r.width == s.width):
                    same = rerun.hardware_class == cls
                    key = (rerun.source, same)
                    row = elsewhere.setdefault(key, {
                        "kind": f"real reruns ({rerun.source}, {rerun.hardware_class}) against "
                                + (f"their own class" if same else "the other classes, cross-class rule"),
                        "model": label, "runs": 0, "old": 0, "new": 0, "caught_by": {}})
                    _count(row, judge_run(b, _as_rerun(rerun.baseline, f"{s.width} {rerun.source}", rerun.hardware_class), config,
                                          cross_class=not same))
                    row["old"] += old and old_fails(b, [x.guess for x in rerun.baseline.items])
        for row in (identical, noise, across, *elsewhere.values()):
            print(_line(row), file=sys.stderr)
            rows.append(row)
    return rows


def _line(row: dict) -> str:
    cross = f", cross-class {row['cross']}" if "cross" in row else ""
    where = f" {row['class']}" if "class" in row else ""
    return f"{row['kind']} [{row['model']}{where}]: old {row['old']}/{row['runs']}, new {row['new']}/{row['runs']}{cross}"


def markdown(planted: list[dict], quiet: list[dict]) -> str:
    """Three tables: the planted kinds on the reference class, the rare catastrophes on every class, no-change runs."""
    lines = ["| planted regression | model | past a tolerance | caught, old | caught, new | "
             "past a cross-class tolerance | caught, cross-class |", "|---|---|---|---|---|---|---|"]
    for r in (r for r in planted if r["kind"] not in CATASTROPHES):
        lines.append(f"| {r['kind']} | {r['model']} | {r['beyond']} / {r['runs']} | {r['old']} / {r['runs']} | "
                     f"**{r['new']} / {r['runs']}** | {r['cross_beyond']} / {r['runs']} | {r['cross']} / {r['runs']} |")
    classes = sorted({r["class"] for r in planted if r["kind"] in CATASTROPHES})
    header = " | ".join(f"{c}: past / caught / cross-class caught" for c in classes)
    lines += ["", f"| rare catastrophe | model | {header} |", "|---|---|" + "---|" * len(classes)]
    for kind in (k for k in CATASTROPHES if any(r["kind"] == k for r in planted)):
        for label in MODELS.values():
            rows = {r["class"]: r for r in planted if r["kind"] == kind and r["model"] == label}
            cells = " | ".join(f"{rows[c]['beyond']} / **{rows[c]['new']}** / {rows[c]['cross']} of {rows[c]['runs']}"
                               if c in rows else "-" for c in classes)
            lines.append(f"| {kind} | {label} | {cells} |")
    lines += ["", "| no change (false alarms) | model | old | new |", "|---|---|---|---|"]
    for r in quiet:
        lines.append(f"| {r['kind']} | {r['model']} | {r['old']} / {r['runs']} | **{r['new']} / {r['runs']}** |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baselines", type=Path, default=ROOT / "baselines", help="Default: the repo's baselines/")
    parser.add_argument("--runs", type=int, default=4, help="runs per planted kind and baseline. Default: %(default)s")
    parser.add_argument("--noise-runs", type=int, default=15, help="simulated no-change runs per baseline. "
                        "Default: %(default)s")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/planted-regressions.json",
                        help="Default: %(default)s")
    parser.add_argument("--rerun", action="append", default=[], metavar="LABEL:CLASS:DIR",
                        help="real reruns made elsewhere, gated as no-change runs against every class (e.g. "
                        "'H100:cuda-bfloat16:reruns/h100'); benchmarks/reruns/<label>/<class>/ is always read")
    parser.add_argument("--reruns-only", action="store_true", help="run only the real reruns' rows again and merge "
                        "them into --out")
    parser.add_argument("--jobs", type=int, default=1, help="processes judging rows at once (the planted kinds, the "
                        "no-change runs). Default: %(default)s")
    parser.add_argument("--table-only", action="store_true", help="print (and store) the table of the runs already "
                        "in --out, without running them again")
    args = parser.parse_args(argv)

    if args.reruns_only:  # the real reruns' rows again (new reruns arrived), the rest as stored
        stored_runs = json.loads(args.out.read_text(encoding="utf-8"))
        reruns = [r for spec in (*committed_reruns(ROOT / "benchmarks" / "reruns"), *args.rerun) for r in read_reruns(spec)]
        fresh = quiet_rows(committed(args.baselines), GateConfig(), noise_runs=0, old=True, reruns=reruns)
        kept = [r for r in stored_runs["no_change"] if not r["kind"].startswith("real reruns")]
        stored_runs["no_change"] = kept + [r for r in fresh if r["kind"].startswith("real reruns")]
        stored_runs["reruns"] = sorted({f"{r.source} ({r.hardware_class})" for r in reruns})
        stored_runs["markdown"] = markdown(stored_runs["planted"], stored_runs["no_change"])
        write_json(args.out, stored_runs)
        print(stored_runs["markdown"])
        return 0
    if args.table_only:
        stored_runs = json.loads(args.out.read_text(encoding="utf-8"))
        stored_runs["markdown"] = markdown(stored_runs["planted"], stored_runs["no_change"])
        write_json(args.out, stored_runs)
        print(stored_runs["markdown"])
        return 0
    start = time.perf_counter()
    config = GateConfig()
    stored = committed(args.baselines)
    reruns = [r for spec in (*committed_reruns(ROOT / "benchmarks" / "reruns"), *args.rerun) for r in read_reruns(spec)]
    # The old verdict's column is shown for the planted kinds only, so the rare catastrophes skip its permutation test.
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        quiet_job = pool.submit(quiet_rows, stored, config, noise_runs=args.noise_runs, reruns=reruns)
        jobs = [pool.submit(planted_rows, stored, config, runs=args.runs, kinds=(kind,), old=kind not in CATASTROPHES)
                for kind in PLANTED]
        planted = [row for job in jobs for row in job.result()]
        quiet = quiet_job.result()
    table = markdown(planted, quiet)
    print(table)
    write_json(args.out, {
        "baselines": sorted(f"{s.model}/{s.width}: {', '.join(sorted(s.classes))}" for s in stored),
        "config": {"tolerance_share": config.tolerance_share, "log_tolerance": config.log_tolerance,
                   "hits_tolerance": config.hits_tolerance, "unparsed_tolerance": config.unparsed_tolerance,
                   "alpha": config.alpha, "tail_factor": config.tail_factor, "tail_budget": config.tail_budget,
                   "cross_class": config.across_classes().__repr__()},
        "reruns": sorted({f"{r.source} ({r.hardware_class})" for r in reruns}),
        "runs_per_kind_and_baseline": args.runs, "noise_runs_per_baseline": args.noise_runs,
        "planted": planted, "no_change": quiet, "markdown": table,
        "seconds": round(time.perf_counter() - start, 1),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
