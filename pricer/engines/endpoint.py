"""The endpoint engine: price items by asking a served model (vLLM, SGLang, TGI, llama.cpp, `transformers serve`)
through its OpenAI-compatible /v1/completions, with the in-process path's prompts and greedy decoding, bounded
concurrency, retries of transient failures only, and answers stored as they arrive so a killed run resumes."""

from __future__ import annotations

import argparse
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pricer.engines.answer_store import AnswerStore, digest, store_path
from pricer.task.data import Item
from pricer.errors import PricerError
from pricer.engines.predict import DEFAULT_MAX_NEW_TOKENS, Prediction
from pricer.task.prompts import parse_price
from pricer.engines.widths import NAMES, REFERENCE, bits_of

# A single URL, without WIDTH=, is gated as full precision: what a server holds is unknown, and 32 bits is the
# ladder's reference, so an AWQ or GGUF server is named for its width on purpose (4bit=URL).
DEFAULT_WIDTH = REFERENCE
# Requests in flight at once. 4 keeps a CPU server busy without queueing much; a GPU server batches more (16+).
DEFAULT_CONCURRENCY = 4
CONNECT_TIMEOUT = 10.0  # seconds: a server that does not accept a connection in this time is down or unreachable
# Seconds to wait for one answer once sent: a 135M model on a busy 2-core CPU answers in 1-3 s, a large served
# model behind a queue in well under a minute.
DEFAULT_READ_TIMEOUT = 120.0
# The class folder of a served model's baselines. Its answers are computed by the server, not by the machine asking,
# whose class is probed by speed: on a busy CPU the probe flipped between cpu-float32 and cpu-bfloat16 from one run
# to the next. One fixed folder; float32, the served 32-bit width's dtype.
SERVED_CLASS = "cpu-float32"
DEFAULT_DEADLINE = 3600.0  # seconds for the whole run; unanswered items then count as no answer
RETRIES = 5  # per request, for connection errors, read timeouts and TRANSIENT statuses
BACKOFF = 0.5  # urllib3's backoff factor: 0.5, 1, 2, 4 s between tries (a Retry-After header overrides it)
# Statuses worth asking again: request timeout, too many requests, and server-side failures. Any other 4xx says the
# request itself is wrong (bad model id, bad field): asking again would only repeat it, so the run stops.
TRANSIENT = (408, 429, 500, 502, 503, 504)
# The fields every request sends, so that no engine's default decides: llama.cpp's server samples at 0.8 with a
# random seed unless told. `stop` is null: the in-process path stops only at the model's end-of-sequence token
# (a "\n" stop would cut "\n\n$12" to "" and count it unparsed), and an empty list makes `transformers serve` 5.24
# answer 500.
SAMPLING = {"temperature": 0.0, "top_p": 1.0, "seed": 0, "stop": None}
HEALTH_PATHS = ("/health",)  # vLLM, SGLang, TGI, llama.cpp and `transformers serve` all answer it
# Where engines say their version: vLLM and SGLang /version, TGI /info, llama.cpp /props.
VERSION_PATHS = ("/version", "/info", "/props")
MODEL_OPTION = "--pricer-endpoint-model; pricer eval: --endpoint-model"


class EndpointError(PricerError):
    """A server that cannot be used, or a run with items it did not answer."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointConfig:
    """How to ask the servers: each width's URL and the run's limits, from the options."""

    urls: tuple[tuple[str, str], ...]  # (width, base URL ending in /v1), in width order
    model: str | None = None  # the model id the server must serve; None: the one it serves
    concurrency: int = DEFAULT_CONCURRENCY
    read_timeout: float = DEFAULT_READ_TIMEOUT
    deadline: float = DEFAULT_DEADLINE
    deterministic: bool = False  # the user declares the server runs batch-invariant; recorded, not checked
    recheck: int = 0  # items asked again at the end under another batch mix, to measure the server's noise
    retries: int = RETRIES
    backoff: float = BACKOFF
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    store: Path | None = None  # folder of stored answers; None: the pricer cache's `answers/`
    hardware_class: str = SERVED_CLASS  # the class folder its baselines live in, whatever machine asks

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(bits_of(width) for width, _ in self.urls)

    def url(self, width: str) -> str:
        return dict(self.urls)[width]

    def baseline_name(self, model_name: str) -> str:
        """The folder of the served model's baselines: the named model id's last part, else the in-process model's
        name, then `-served`: never the in-process model's own folder, which a rewrite would overwrite."""
        if self.model:
            tail = self.model.rstrip("/").rsplit("/", 1)[-1]
            model_name = re.sub(r"[^a-z0-9._-]+", "-", tail.lower()).strip("-.") or "model"
        return f"{model_name}-served"

    def store_folder(self) -> Path:
        if self.store is not None:
            return self.store
        from pricer.engines.transformers.default_model import cache_root

        return cache_root() / "answers"


def endpoint_urls(flag: str) -> Callable[[str], tuple[tuple[str, str], ...]]:
    """Parser of `URL` or `WIDTH=URL`, several separated by commas (an ini list): (width, URL ending in /v1)."""

    def parse(value: str) -> tuple[tuple[str, str], ...]:
        pairs = []
        for part in filter(None, (p.strip() for p in value.split(","))):
            width, sep, url = part.partition("=")
            if not sep or "://" in width:
                width, url = DEFAULT_WIDTH, part
            width = width if width.endswith("bit") else f"{width}bit"
            if width not in NAMES:
                raise argparse.ArgumentTypeError(f"{flag}: {part!r}: width {width!r} is not one of {', '.join(NAMES)}")
            scheme = urlsplit(url).scheme
            if scheme not in ("http", "https") or not urlsplit(url).netloc:
                raise argparse.ArgumentTypeError(f"{flag}: {url!r} is not an http(s) URL, "
                                                 "e.g. http://127.0.0.1:8000/v1")
            url = url.rstrip("/")
            pairs.append((width, url if url.endswith("/v1") else url + "/v1"))
        if not pairs:
            raise argparse.ArgumentTypeError(f"{flag}: {value!r} names no URL")
        return tuple(pairs)

    return parse


def joined_urls(given: Iterable[Any], *, flag: str) -> tuple[tuple[str, str], ...]:
    """The (width, URL) pairs of an option given several times (a list of parsed values) or once, in width order;
    a width named twice is refused."""
    pairs: list[tuple[str, str]] = []
    for value in given:
        pairs.extend([value] if isinstance(value[0], str) else value)
    seen = Counter(width for width, _ in pairs)
    twice = [width for width, count in seen.items() if count > 1]
    if twice:
        raise argparse.ArgumentTypeError(f"{flag}: {twice[0]} is given twice; name each width once (4bit=URL)")
    return tuple(sorted(pairs, key=lambda pair: bits_of(pair[0])))


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerIdentity:
    """What the server says of itself before the first request; recorded in the run's fingerprint."""

    url: str
    model: str  # the id asked for in every request
    root: str | None  # vLLM's `root`: the weights the id was served from
    owned_by: str | None  # names the engine on most servers (vllm, sglang, llamacpp; `local` for transformers)
    engine_version: str | None

    def fields(self) -> dict[str, str | None]:
        return {"model": self.model, "endpoint_url": self.url, "endpoint_model_root": self.root,
                "endpoint_owned_by": self.owned_by, "engine_version": self.engine_version}


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


class _Stop(Exception):
    """A failure asking again cannot mend (a 4xx other than 408/429): the run stops at once."""


class EndpointClient:
    """HTTP to one server: urllib3's Retry decides which failures to try again (connection errors, read timeouts,
    TRANSIENT statuses, honouring Retry-After), with backoff; one requests.Session per thread."""

    def __init__(self, url: str, *, read_timeout: float = DEFAULT_READ_TIMEOUT, retries: int = RETRIES,
                 backoff: float = BACKOFF, pool: int = DEFAULT_CONCURRENCY) -> None:
        self.url = url.rstrip("/")
        self.root = self.url.removesuffix("/v1")
        self.timeout = (CONNECT_TIMEOUT, read_timeout)
        self.retries, self.backoff, self.pool = retries, backoff, pool
        self._local = threading.local()
        self.system_fingerprints: set[str] = set()  # what OpenAI-style servers say of their build, per answer

    def _session(self):  # -> requests.Session
        session = getattr(self._local, "session", None)
        if session is None:
            import requests
            from requests.adapters import HTTPAdapter
            from urllib3.util.retry import Retry

            retry = Retry(total=self.retries, connect=self.retries, read=self.retries, status=self.retries,
                          other=0, allowed_methods=None,  # POST too: a greedy completion is safe to ask twice
                          status_forcelist=TRANSIENT, backoff_factor=self.backoff, respect_retry_after_header=True,
                          raise_on_status=False)  # the last answer comes back, so its message can be quoted
            session = requests.Session()
            session.mount("http://", HTTPAdapter(max_retries=retry, pool_maxsize=self.pool))
            session.mount("https://", HTTPAdapter(max_retries=retry, pool_maxsize=self.pool))
            self._local.session = session
        return session

    def request(self, method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """(status, parsed JSON or None); an unreachable server or a broken body raises EndpointError naming it."""
        import requests

        try:
            response = self._session().request(method, url, json=body, timeout=self.timeout)
            content = response.content  # read here: a body cut short raises now
        except requests.exceptions.RequestException as exc:
            raise EndpointError(f"{url}: {self._failure(exc)}") from None
        try:
            return response.status_code, response.json() if content else None
        except ValueError:
            if response.ok:
                raise EndpointError(f"{url}: HTTP {response.status_code} with a body that is not JSON: "
                                    f"{content[:120]!r}") from None
            return response.status_code, content.decode(errors="replace")[:300]

    def _failure(self, exc: Exception) -> str:
        """What went wrong, in words: the kind of failure, then urllib3's innermost reason."""
        import requests
        from urllib3.exceptions import ReadTimeoutError

        reason = _reason(exc)
        if isinstance(exc, requests.exceptions.Timeout) or isinstance(getattr(exc.args[0] if exc.args else None,
                                                                              "reason", None), ReadTimeoutError):
            return (f"no answer within {self.timeout[1]:g} s, {self.retries} retries (--pricer-endpoint-timeout)")
        if isinstance(exc, requests.exceptions.RetryError):
            return f"still failing after {self.retries} retries ({reason})"
        if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
            return f"the answer broke off ({reason})"
        if isinstance(exc, requests.exceptions.ConnectionError):
            return f"cannot connect, {self.retries} retries ({reason})"
        return reason

    def completion(self, body: dict[str, Any]) -> str:
        """One completion's text; transient failures that outlast the retries raise EndpointError, others _Stop."""
        url = f"{self.url}/completions"
        status, answer = self.request("POST", url, body)
        if status in TRANSIENT:
            raise EndpointError(f"{url}: HTTP {status} after {self.retries} retries: {_message(answer)}")
        if status >= 400:
            raise _Stop(f"{url}: HTTP {status}: {_message(answer)}")
        try:
            text = answer["choices"][0]["text"]
        except (TypeError, KeyError, IndexError):
            text = None
        if not isinstance(text, str):
            raise EndpointError(f"{url}: an answer without choices[0].text: {str(answer)[:200]}")
        if answer.get("system_fingerprint"):
            self.system_fingerprints.add(str(answer["system_fingerprint"]))
        return text


def _reason(exc: Exception) -> str:
    """The innermost cause urllib3 wraps (e.g. 'Read timed out.'), not the whole chain of reprs."""
    inner = exc.args[0] if exc.args else exc
    reason = getattr(inner, "reason", None) or inner
    return str(reason).split(": ", 1)[-1][:200]


def _message(answer: Any) -> str:
    """The server's own words: OpenAI's error.message, FastAPI's detail, or the body."""
    if isinstance(answer, dict):
        error = answer.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for key in ("detail", "message", "error"):
            if answer.get(key):
                return str(answer[key])
    return str(answer)[:300]


def identify(client: EndpointClient, wanted: str | None) -> ServerIdentity:
    """Health check, the served model ids (the one named must be among them) and the engine's version."""
    for path in HEALTH_PATHS:
        status, body = client.request("GET", client.root + path)
        if status >= 400 and status != 404:  # a server without /health is judged by /v1/models alone
            raise EndpointError(f"{client.root}{path}: the server is not healthy (HTTP {status}: {_message(body)})")
    url = f"{client.url}/models"
    status, body = client.request("GET", url)
    if status >= 400 or not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise EndpointError(f"{url}: HTTP {status}, not an OpenAI model list: {str(body)[:200]}; is {client.url} an "
                            "OpenAI-compatible server's /v1?")
    served = {str(m["id"]): m for m in body["data"] if isinstance(m, dict) and "id" in m}
    if wanted is None:
        if len(served) != 1:
            raise EndpointError(f"{url}: the server serves {len(served)} models "
                                f"({', '.join(sorted(served)) or 'none'}); name one with {MODEL_OPTION}")
        wanted = next(iter(served))
    if wanted not in served:
        raise EndpointError(f"{url}: the server does not serve model {wanted!r}; it serves "
                            f"{', '.join(map(repr, sorted(served))) or 'none'} ({MODEL_OPTION})")
    entry = served[wanted]
    return ServerIdentity(url=client.url, model=wanted, root=_text(entry.get("root")),
                          owned_by=_text(entry.get("owned_by")), engine_version=_version(client))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _version(client: EndpointClient) -> str | None:
    for path in VERSION_PATHS:
        try:
            status, body = client.request("GET", client.root + path)
        except EndpointError:
            continue
        if status == 200 and isinstance(body, dict):
            for key in ("version", "build_info"):  # llama.cpp's /props: build_info "b5000-abc123"
                if body.get(key):
                    return str(body[key])
    return None


class EndpointPredictor:
    """Prices items by asking one server; implements pricer.engines.predict's Predictor protocol."""

    def __init__(self, config: EndpointConfig, *, width: str) -> None:
        self.config = config
        self.width = width
        self.client = EndpointClient(config.url(width), read_timeout=config.read_timeout, retries=config.retries,
                                     backoff=config.backoff, pool=max(config.concurrency, 1))
        self.identity = identify(self.client, config.model)
        self.name = f"{self.identity.model} {width} served"
        self.store = AnswerStore(store_path(config.store_folder(), self._store_identity()))
        self.asked = 0  # requests sent by this process (retries not counted): a resumed run asks only the missing
        self.recheck: Recheck | None = None

    def _store_identity(self) -> dict[str, Any]:
        """What makes stored answers reusable: the served model and engine, and every sampling field. Not the URL
        (a restarted server on another port is the same model) nor the concurrency (see docs/engines.md)."""
        identity = self.identity
        return {"model": identity.model, "root": identity.root, "owned_by": identity.owned_by,
                "engine_version": identity.engine_version, "max_tokens": self.config.max_new_tokens, **SAMPLING}

    def body(self, prompt: str) -> dict[str, Any]:
        return {"model": self.identity.model, "prompt": prompt, "max_tokens": self.config.max_new_tokens, **SAMPLING}

    def fields(self) -> dict[str, Any]:
        """The fingerprint's fields for this server: decisive ones named as the in-process path names them."""
        c = self.config
        return {"predictor": "llm", "engine": "endpoint", "bits": bits_of(self.width),
                "max_new_tokens": c.max_new_tokens, "do_sample": False, **self.identity.fields(),
                **{f"request_{k}": v for k, v in SAMPLING.items() if v is not None},
                "concurrency": c.concurrency, "deterministic_mode": c.deterministic,
                "system_fingerprint": ",".join(sorted(self.client.system_fingerprints)) or None,
                "recheck": self.recheck.line() if self.recheck else None}

    def predict(self, items: Sequence[Item]) -> list[Prediction]:
        """One Prediction per item; stored answers are reused, the rest asked. Any item left without an answer
        fails the run (EndpointError) after every other answer has been stored."""
        texts = self.complete([item.prompt for item in items])
        if self.config.recheck:
            self.recheck = self._recheck([item.prompt for item in items], texts)
        predictions = []
        for text in texts:
            price = parse_price(text)
            predictions.append(Prediction(guess=price or 0.0, completion=text, parsed=price is not None))
        return predictions

    def complete(self, prompts: Sequence[str]) -> list[str]:
        keys = [digest(self.body(prompt)) for prompt in prompts]
        stored = self.store.load()
        texts: dict[int, str] = {i: stored[key] for i, key in enumerate(keys) if key in stored}
        missing = [i for i in range(len(prompts)) if i not in texts]
        answered, failed = self._ask(missing, prompts, keys=keys, concurrency=self.config.concurrency)
        texts |= answered
        if failed:
            raise EndpointError(self._no_answer_message(failed, total=len(prompts), answered=len(texts)))
        return [texts[i] for i in range(len(prompts))]

    def _ask(self, indices: Sequence[int], prompts: Sequence[str], *, keys: Sequence[str] | None,
             concurrency: int) -> tuple[dict[int, str], list[NoAnswer]]:
        """Ask these items, at most `concurrency` at once, until the deadline; store each answer as it arrives
        (when keys are given). A _Stop cancels what is not yet sent and raises at once."""
        answered: dict[int, str] = {}
        failed: list[NoAnswer] = []
        end = time.monotonic() + self.config.deadline
        if not indices:
            return answered, failed
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="pricer-endpoint")
        stop = threading.Event()  # set by the worker meeting a _Stop, so that no other request is sent after it
        try:
            pending: dict[Future, int] = {pool.submit(self._one, prompts[i], end, stop): i for i in indices}
            while pending:
                done, _ = wait(pending, timeout=max(end - time.monotonic(), 0), return_when=FIRST_COMPLETED)
                if not done:  # the deadline passed with requests in flight
                    failed += [NoAnswer(index=i, cause=f"the run's deadline ({self.config.deadline:g} s, "
                                        "--pricer-endpoint-deadline) passed") for i in pending.values()]
                    break
                for future in done:
                    i = pending.pop(future)
                    try:
                        text = future.result()
                    except _Stop as exc:
                        raise EndpointError(f"{exc} (item {i}); stopped: asking again would repeat it") from None
                    except EndpointError as exc:
                        failed.append(NoAnswer(index=i, cause=str(exc)))
                        continue
                    answered[i] = text
                    if keys is not None:
                        self.store.add(keys[i], text)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return answered, sorted(failed, key=lambda f: f.index)

    def _one(self, prompt: str, end: float, stop: threading.Event) -> str:
        if stop.is_set():
            raise EndpointError("not asked: the run stopped")
        if time.monotonic() >= end:
            raise EndpointError(f"the run's deadline ({self.config.deadline:g} s, --pricer-endpoint-deadline) passed")
        self.asked += 1  # one thread at a time per item; a lost increment would only under-count a statistic
        try:
            return self.client.completion(self.body(prompt))
        except _Stop:
            stop.set()
            raise

    def _no_answer_message(self, failed: list[NoAnswer], *, total: int, answered: int) -> str:
        causes = Counter(_cause_kind(f.cause) for f in failed)
        first = failed[0]
        return (f"{self.client.url}: {len(failed)} of {total} items got no answer, so this run is not scored and "
                f"writes no baseline ({'; '.join(f'{n} x {kind}' for kind, n in causes.most_common())}); first: item "
                f"{first.index}: {first.cause}. The {answered} answers are stored in {self.store.path}: run again "
                "to ask only the missing ones")

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


def endpoint_config(values: Any, *, deterministic: bool, given: Iterable[str],
                    flag: Callable[[str], str | None]) -> EndpointConfig | None:
    """The options' EndpointConfig (None without an endpoint); options for a model loaded here are refused with one,
    since the run would ignore them."""
    if not values.get("endpoint"):
        return None
    chosen = f"{flag('endpoint')} asks a served model"
    for name in ("predictor", "adapter", "bits", "device", "batch_size", "token_budget"):
        if name in given or (name == "predictor" and values.get(name)):
            hint = "; name each server's width instead: 4bit=URL" if name == "bits" else ""
            raise argparse.ArgumentTypeError(f"{flag(name)} applies to a model loaded here; {chosen}{hint}")
    raw = values["endpoint"]
    urls = joined_urls(raw if isinstance(raw, list) else [raw], flag=str(flag("endpoint")))
    return EndpointConfig(urls=urls, model=values.get("endpoint_model"),
                          concurrency=values.get("concurrency") or DEFAULT_CONCURRENCY,
                          read_timeout=values.get("endpoint_timeout") or DEFAULT_READ_TIMEOUT,
                          deadline=values.get("endpoint_deadline") or DEFAULT_DEADLINE,
                          deterministic=deterministic, recheck=values.get("endpoint_recheck") or 0)
