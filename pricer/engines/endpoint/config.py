"""How a run asks its servers: each width's URL from `URL` or `WIDTH=URL` options, and the run's limits
(concurrency, timeouts, deadline, retries), with their defaults."""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from pricer.engines.predict import DEFAULT_MAX_NEW_TOKENS
from pricer.engines.widths import NAMES, REFERENCE, bits_of

# A single URL, without WIDTH=, is gated as full precision: what a server holds is unknown, and 32 bits is the
# ladder's reference, so an AWQ or GGUF server is named for its width on purpose (4bit=URL).
DEFAULT_WIDTH = REFERENCE
# Requests in flight at once. 4 keeps a CPU server busy without queueing much; a GPU server batches more (16+).
DEFAULT_CONCURRENCY = 4
# Seconds to wait for one answer once sent: a 135M model on a busy 2-core CPU answers in 1-3 s, a large served
# model behind a queue in well under a minute.
DEFAULT_READ_TIMEOUT = 120.0
# The class folder of a served model's baselines. Its answers are computed by the server, not by the machine asking,
# whose class is probed by speed: on a busy CPU the probe flipped between cpu-float32 and cpu-bfloat16 from one run
# to the next. One fixed folder; float32, the served 32-bit width's dtype.
SERVED_CLASS = "cpu-float32"
DEFAULT_DEADLINE = 3600.0  # seconds for the whole run; unanswered items then count as no answer
RETRIES = 5  # per request, for connection errors, read timeouts and TRANSIENT statuses
# Seconds before the first retry, doubling: 0.5, 1, 2, 4, 8 s before retries 1-5 (a Retry-After header replaces
# it, up to pricer.engines.endpoint.client.RETRY_AFTER_CAP).
BACKOFF = 0.5


# The API key sent as `Authorization: Bearer`, read from the environment only (an option's value lands in shell
# history, CI logs and the accepting command). pricer's own name, not OPENAI_API_KEY: a key for a hosted account
# must not be sent to whatever server a gate names.
API_KEY_ENV = "PRICER_ENDPOINT_API_KEY"
_USERINFO = re.compile(r"(?<=://)([^/@\s:]*):[^/@\s]*@")


def redacted(text: str) -> str:
    """The text with every URL's password, and the API key wherever a server quoted it, replaced by **** (as pip
    shows index URLs)."""
    import os

    key = os.environ.get(API_KEY_ENV)
    return _USERINFO.sub(r"\1:****@", text.replace(key, "****") if key else text)


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """(the URL without `user:password@`, (user, password) or None): the URL is recorded, the pair only sent."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    return (urlunsplit(parts._replace(netloc=netloc)),
            (unquote(parts.username or ""), unquote(parts.password or "")))


# Options only a served model takes: refused without an endpoint, since the run would ignore them.
SERVED_ONLY = ("endpoint_model", "concurrency", "endpoint_timeout", "endpoint_deadline", "endpoint_recheck")


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointConfig:
    """How to ask the servers: each width's URL and the run's limits, from the options."""

    urls: tuple[tuple[str, str], ...]  # (width, base URL ending in /v1, without credentials), in width order
    # (width, user, password) from URLs given with `user:password@`: sent, never shown (repr) nor recorded.
    credentials: tuple[tuple[str, str, str], ...] = field(default=(), repr=False, compare=False)
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

    def login(self, width: str) -> tuple[str, str] | None:
        """The width's URL's (user, password), or None."""
        return next(((user, password) for w, user, password in self.credentials if w == width), None)

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
                raise argparse.ArgumentTypeError(f"{flag}: {redacted(part)!r}: width {width!r} is not one of "
                                                 f"{', '.join(NAMES)}")
            scheme = urlsplit(url).scheme
            if scheme not in ("http", "https") or not urlsplit(url).netloc:
                raise argparse.ArgumentTypeError(f"{flag}: {redacted(url)!r} is not an http(s) URL, "
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


def endpoint_config(values: Any, *, deterministic: bool, given: Iterable[str],
                    flag: Callable[[str], str | None]) -> EndpointConfig | None:
    """The options' EndpointConfig (None without an endpoint); options for a model loaded here are refused with one,
    since the run would ignore them."""
    if not values.get("endpoint"):
        stray = [name for name in SERVED_ONLY if name in given] + (["endpoint_deterministic"] if deterministic else [])
        if stray:
            raise argparse.ArgumentTypeError(f"{flag(stray[0])} applies to a served model, and without "
                                             f"{flag('endpoint')} the model is loaded here: give "
                                             f"{flag('endpoint')}=URL, or leave {flag(stray[0])} out")
        return None
    chosen = f"{flag('endpoint')} asks a served model"
    for name in ("predictor", "adapter", "bits", "device", "batch_size", "token_budget"):
        if name in given or (name == "predictor" and values.get(name)):
            hint = "; name each server's width instead: 4bit=URL" if name == "bits" else ""
            raise argparse.ArgumentTypeError(f"{flag(name)} applies to a model loaded here; {chosen}{hint}")
    raw = values["endpoint"]
    given_urls = joined_urls(raw if isinstance(raw, list) else [raw], flag=str(flag("endpoint")))
    split = [(width, *split_credentials(url)) for width, url in given_urls]
    return EndpointConfig(urls=tuple((width, url) for width, url, _ in split),
                          credentials=tuple((width, *login) for width, _, login in split if login),
                          model=values.get("endpoint_model"),
                          concurrency=values.get("concurrency") or DEFAULT_CONCURRENCY,
                          read_timeout=values.get("endpoint_timeout") or DEFAULT_READ_TIMEOUT,
                          deadline=values.get("endpoint_deadline") or DEFAULT_DEADLINE,
                          deterministic=deterministic, recheck=values.get("endpoint_recheck") or 0)
