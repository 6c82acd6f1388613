"""One run judged against several references: the baseline it replaces, the target branch's, the anchor drift is
measured from; and what a verdict says of the model that made the baseline."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from pricer.gate.verdict import Verdict
from pricer.store.baselines import Anchor
from pricer.store.fingerprint import FILE_PREFIXES

ANCHOR_WORDS = "the anchor"  # how every anchor's label starts (anchor_label)
# Changes that make a baseline describe another model, prompt or decoding: a run that passes against it is worth
# storing as the new baseline.
# A field named by a file's prefix (a model's or adapter's config, tokenizer, chat template) counts as its model.
REPLACED = {
    "model": ("predictor", "model", "weights_sha256", "adapter_sha256", "quantization", *FILE_PREFIXES),
    "prompt": ("prompts_sha256",),
    "decoding": ("max_new_tokens", "do_sample"),
}


def verdict_word(verdict: Verdict) -> str:
    """How a run was judged in a few words: WORSE (measures), better (measures) or not worse."""
    if verdict.worse:
        return verdict.status()
    return f"better ({', '.join(verdict.better)})" if verdict.better else "not worse"


def with_references(verdict: Verdict, references: Sequence[tuple[str, Verdict]]) -> Verdict:
    """The verdict, failing also where the run is worse than another reference; a reference of other items is a
    note (the change moved to other items, which only its own baseline can judge)."""
    if not references:
        return verdict
    worse = [(label, v) for label, v in references if v.worse]
    reasons = (*verdict.reasons, *(f"against {label}: {'; '.join(v.reasons)}" for label, v in worse))
    return dataclasses.replace(verdict, passed=verdict.passed and not worse, reasons=reasons,
                               references=tuple(references))


def own_verdict(verdict: Verdict) -> Verdict:
    """The verdict against its own baseline alone, without what with_references added (its reasons come last)."""
    if not verdict.references:
        return verdict
    worse = sum(1 for _, v in verdict.references if v.worse)
    reasons = verdict.reasons[:len(verdict.reasons) - worse]
    return dataclasses.replace(verdict, passed=not reasons, reasons=reasons, references=())


def reference_key(label: str) -> str:
    """A reference's stable name in reports (JUnit properties, chart files): 'anchor' or 'against' (a git ref)."""
    return "anchor" if label.startswith(ANCHOR_WORDS) else "against"


def replaced_what(verdict: Verdict) -> str:
    """'model', 'prompt' or 'model and prompt' when the baseline was made by another one, else ''."""
    return " and ".join(kind for kind in REPLACED if _replacing(verdict, REPLACED[kind]))


def replaced_fields(verdict: Verdict) -> tuple[str, ...]:
    """The changed fields that make the baseline describe another model, prompt or decoding (files by name)."""
    return _replacing(verdict, tuple(n for names in REPLACED.values() for n in names))


def _replacing(verdict: Verdict, names: tuple[str, ...]) -> tuple[str, ...]:
    prefixes = tuple(n for n in names if n.endswith("/"))
    return tuple(c.field for c in verdict.changes if c.field in names or (prefixes and c.field.startswith(prefixes)))


def becomes_anchor(judged: Verdict, drift: Verdict | None) -> bool:
    """Whether a run stored as the baseline becomes the anchor drift is measured from: a trade-off accepted on purpose
    (judged worse), or a run better than the best state accepted so far (`drift`: judged against the anchor; None
    where the baseline it replaces is that state). A run only not worse leaves the anchor where it is."""
    if judged.worse:
        return True
    best = judged if drift is None else drift
    return not best.not_comparable and bool(best.better)


def anchor_label(anchor: Anchor) -> str:
    """How the verdict names the anchor: when it was stored and why."""
    return f"{ANCHOR_WORDS} of {anchor.date[:10]} ({anchor.reason})"
