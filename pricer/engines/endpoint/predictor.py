"""EndpointPredictor: items priced by one server with the in-process path's prompts and greedy decoding, at most
`concurrency` requests at once until the deadline, each answer stored as it arrives so a killed run resumes."""

from __future__ import annotations

import queue
import re
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pricer.engines.endpoint.answer_store import AnswerStore, digest, store_path
from pricer.engines.endpoint.client import EndpointClient, EndpointError, Stop
from pricer.engines.endpoint.config import EndpointConfig
from pricer.engines.endpoint.identity import identify
from pricer.engines.predict import Prediction
from pricer.engines.widths import bits_of
from pricer.task.items import Item
from pricer.task.prompts import parse_price

# The fields every request sends, so that no engine's default decides: llama.cpp's server samples at 0.8 with a
# random seed unless told. `stop` is null: the in-process path stops only at the model's end-of-sequence token
# (a "\n" stop would cut "\n\n$12" to "" and count it unparsed), and an empty list makes `transformers serve` 5.24
# answer 500.
SAMPLING = {"temperature": 0.0, "top_p": 1.0, "seed": 0, "stop": None}
# Stored answers of an unfinished run asked again before the rest are reused: a server whose weights or engine
# changed behind the same model id answers some of them differently (a swapped model changed 8 of 8 in
# tests/e2e/test_endpoint_faults.py), and then none is reused.
PROOF = 4
GRACE = 0.5  # seconds past the deadline to collect answers already read; a request never outlives the deadline


@dataclass(frozen=True, slots=True, kw_only=True)
class NoAnswer:
    """An item the server never answered, and why; counted apart from unparsed answers and never scored."""

    index: int
    cause: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Recheck:
    """Items asked again at the end under another batch mix, and how many answers changed."""

    asked: int
    changed: int
    concurrency: int

    def line(self) -> str:
        return (f"{self.changed} of {self.asked} answers changed when asked again at concurrency {self.concurrency}"
                + ("" if self.changed else ": this server answered the same under both batch mixes"))


class EndpointPredictor:
    """Prices items by asking one server; implements pricer.engines.predict's Predictor protocol."""

    def __init__(self, config: EndpointConfig, *, width: str) -> None:
        self.config = config
        self.width = width
        self.client = EndpointClient(config.url(width), read_timeout=config.read_timeout, retries=config.retries,
                                     backoff=config.backoff, pool=max(config.concurrency, 1),
                                     deadline=config.deadline,  # from now: the checks below count
                                     login=config.login(width))
        self.identity = identify(self.client, config.model)
        self.name = f"{self.identity.model} {width} served"
        self.store = AnswerStore(store_path(config.store_folder(), self._store_identity()))
        self.asked = 0  # requests sent by this process (retries not counted): a resumed run asks only the missing
        self.answers_asked: int | None = None  # of this run's answers, those the server gave now (proof included)
        self.answers_reused: int | None = None  # and those kept from an unfinished run, after the proof
        self.discarded = 0  # stored answers thrown away because the server no longer gave them
        self.recheck: Recheck | None = None

    def _store_identity(self) -> dict[str, Any]:
        """What makes stored answers reusable: the served model and engine, and every sampling field. Not the URL
        (a restarted server on another port is the same model) nor the concurrency (see docs/engines.md)."""
        identity = self.identity
        return {"model": identity.model, "root": identity.root, "owned_by": identity.owned_by,
                "engine_version": identity.engine_version, "max_tokens": self.config.max_new_tokens, **SAMPLING}

    def body(self, prompt: str) -> dict[str, Any]:
        return {"model": self.identity.model, "prompt": prompt, "max_tokens": self.config.max_new_tokens, **SAMPLING}

    def store_key(self, prompt: str) -> str:
        """The stored answer's key: the whole request."""
        return digest(self.body(prompt))

    def fields(self) -> dict[str, Any]:
        """The fingerprint's fields for this server: decisive ones named as the in-process path names them."""
        c = self.config
        return {"predictor": "llm", "engine": "endpoint", "bits": bits_of(self.width),
                "max_new_tokens": c.max_new_tokens, "do_sample": False, **self.identity.fields(),
                **{f"request_{k}": v for k, v in SAMPLING.items() if v is not None},
                "concurrency": c.concurrency if self.answers_asked else None, "deterministic_mode": c.deterministic,
                "endpoint_answers_asked": self.answers_asked, "endpoint_answers_reused": self.answers_reused,
                "endpoint_answers_discarded": self.discarded or None,
                "system_fingerprint": ",".join(sorted(self.client.system_fingerprints)) or None,
                "endpoint_answer_model": ",".join(sorted(self.client.answer_models)) or None,
                "recheck": self.recheck.line() if self.recheck else None}

    def predict(self, items: Sequence[Item]) -> list[Prediction]:
        """One Prediction per item, each asked now (or kept from an unfinished run, see complete). Any item left
        without an answer fails the run (EndpointError) after every other answer has been stored."""
        texts = self.complete([item.prompt for item in items])
        if self.config.recheck:
            self.recheck = self._recheck([item.prompt for item in items], texts)
        predictions = []
        for text in texts:
            price = parse_price(text)
            predictions.append(Prediction(guess=price or 0.0, completion=text, parsed=price is not None))
        return predictions

    def complete(self, prompts: Sequence[str]) -> list[str]:
        """Every prompt's answer, asked of the server now. Answers stored by a run that did not finish are reused
        only after the server proves itself the same: PROOF of them are asked again, and any difference discards
        them all. A run that finishes deletes its stored answers, so the next gate asks every item again."""
        keys = [self.store_key(prompt) for prompt in prompts]
        stored = self.store.load()
        kept: dict[int, str] = {i: stored[key] for i, key in enumerate(keys) if key in stored}
        texts: dict[int, str] = {}
        if kept:
            proof = sorted(kept)[:PROOF]
            again, failed = self._ask(proof, prompts, keys=None, concurrency=self.config.concurrency)
            if failed:
                raise EndpointError(self._no_answer_message(failed, total=len(prompts), answered=len(kept)))
            if any(again[i] != kept[i] for i in proof):
                self.discarded = len(kept)
                self.store.discard()
                kept = {}
            else:
                texts |= again
        reused = {i: text for i, text in kept.items() if i not in texts}
        texts |= reused
        missing = [i for i in range(len(prompts)) if i not in texts]
        answered, failed = self._ask(missing, prompts, keys=keys, concurrency=self.config.concurrency)
        texts |= answered
        if failed:
            raise EndpointError(self._no_answer_message(failed, total=len(prompts), answered=len(texts)))
        self.answers_asked, self.answers_reused = len(prompts) - len(reused), len(reused)
        self.store.discard()  # the run finished: its answers live in the run, and the next gate asks again
        return [texts[i] for i in range(len(prompts))]

    def _ask(self, indices: Sequence[int], prompts: Sequence[str], *, keys: Sequence[str] | None,
             concurrency: int) -> tuple[dict[int, str], list[NoAnswer]]:
        """Ask these items, at most `concurrency` at once, until the deadline; store each answer as it arrives
        (when keys are given). A Stop cancels what is not yet sent and raises at once. The askers are daemon
        threads whose waits the client's `cancel` ends: a run that ends early never waits for them, nor does the
        process's exit."""
        answered: dict[int, str] = {}
        failed: list[NoAnswer] = []
        if not indices:
            return answered, failed
        todo: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in indices:
            todo.put(i)
        results: queue.SimpleQueue[tuple[int, str | Exception]] = queue.SimpleQueue()
        for _ in range(min(concurrency, len(indices))):
            threading.Thread(target=self._asker, args=(todo, results, prompts), daemon=True,
                             name="pricer-endpoint").start()
        pending = set(indices)
        try:
            while pending:
                try:
                    i, result = results.get(timeout=max(self.client.end - time.monotonic(), 0) + GRACE)
                except queue.Empty:  # the deadline passed with requests in flight
                    failed += [NoAnswer(index=i, cause=self.client.deadline_text) for i in pending]
                    break
                pending.discard(i)
                if isinstance(result, Stop):
                    raise EndpointError(f"{result} (item {i}); stopped: asking again would repeat it") from None
                if isinstance(result, Exception):
                    failed.append(NoAnswer(index=i, cause=str(result)))
                    continue
                answered[i] = result
                if keys is not None:
                    self.store.add(keys[i], result)
        except BaseException:
            self.client.cancel.set()  # a Stop, or pytest interrupted: no request is sent after it
            raise
        if failed:
            self.client.cancel.set()  # the run is not scored: the askers still waiting stop now
        return answered, sorted(failed, key=lambda f: f.index)

    def _asker(self, todo: queue.SimpleQueue, results: queue.SimpleQueue, prompts: Sequence[str]) -> None:
        """One thread's loop: the next item, asked, until none is left; every outcome goes to `results`."""
        while True:
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            try:
                results.put((i, self._one(prompts[i])))
            except (EndpointError, Stop) as exc:
                results.put((i, exc))
            except Exception as exc:  # a bug must not leave its item pending until the deadline
                results.put((i, EndpointError(f"{self.client.url}: {type(exc).__name__}: {exc}")))

    def _one(self, prompt: str) -> str:
        why = self.client.broken
        if why:
            raise EndpointError(f"{self.client.url}/completions: {why}")
        self.asked += 1  # one thread at a time per item; a lost increment would only under-count a statistic
        try:
            return self.client.completion(self.body(prompt))
        except Stop:
            self.client.cancel.set()  # no other request is sent after it
            raise

    def _no_answer_message(self, failed: list[NoAnswer], *, total: int, answered: int) -> str:
        causes = Counter(_cause_kind(f.cause) for f in failed)
        first = failed[0]
        kept = (f"The {answered} answers are stored in {self.store.path}: run again to ask only the missing ones "
                "(and a few stored ones again, to prove the server unchanged)" if answered and
                self.store.path.exists() else "No answer was stored: run again to ask every item")
        return (f"{self.client.url}: {len(failed)} of {total} items got no answer, so this run is not scored and "
                f"writes no baseline ({'; '.join(f'{n} x {kind}' for kind, n in causes.most_common())}); first: item "
                f"{first.index}: {first.cause}. {kept}")

    def _recheck(self, prompts: Sequence[str], texts: Sequence[str]) -> Recheck:
        """Ask the first `recheck` items again, unstored, under another batch mix: one at a time after a concurrent
        run, else all at once."""
        sample = list(range(min(self.config.recheck, len(prompts))))
        concurrency = 1 if self.config.concurrency > 1 else max(len(sample), 1)
        again, failed = self._ask(sample, prompts, keys=None, concurrency=concurrency)
        if failed:
            raise EndpointError(self._no_answer_message(failed, total=len(sample), answered=len(again))
                                .replace("this run is not scored", "the recheck (--pricer-endpoint-recheck) failed"))
        return Recheck(asked=len(sample), changed=sum(again[i] != texts[i] for i in sample), concurrency=concurrency)


def _cause_kind(cause: str) -> str:
    """A failure's kind for the count: the cause without its URL and details."""
    text = cause.split(": ", 1)[-1]
    return re.split(r"[:(]", text, maxsplit=1)[0].strip()
