"""HTTP to one served model, in bounded time: retries of transient failures only, each wait capped and cancellable,
every request inside the run's deadline, bodies read up to a size no completion needs, and a circuit breaker that
stops the run when the server cannot be reached; failures said in words (EndpointError), or Stop for those asking
again cannot mend."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from pricer.engines.endpoint.config import (API_KEY_ENV, BACKOFF, DEFAULT_CONCURRENCY, DEFAULT_DEADLINE,
                                            DEFAULT_READ_TIMEOUT, RETRIES, redacted)
from pricer.errors import PricerError

CONNECT_TIMEOUT = 10.0  # seconds: a server that does not accept a connection in this time is down or unreachable
# Statuses worth asking again: request timeout, too many requests, and server-side failures. Any other 4xx says the
# request itself is wrong (bad model id, bad field): asking again would only repeat it, so the run stops.
TRANSIENT = (408, 429, 500, 502, 503, 504)
RETRY_AFTER_CAP = 30.0  # seconds: the longest Retry-After honoured; a server asking more waits this, then is asked
# The largest body read: an 8-token completion is under 1 KB and a model list of hundreds of ids some 100 KB. A
# body that goes on (a misbehaving proxy streamed 2.5 GB in 53 s) is cut here and counts as no answer.
MAX_BODY = 1 << 20
# Connection failures in a row, across the run's threads, that open the breaker: one item's tries (1 + RETRIES,
# 15.5 s of backoff: a server restarting faster is waited for) all refused says the server is down, and every later
# item fails at once instead of after its own retries (a killed server cost 15 s an item, an hour for 250 items at
# concurrency 1; now 16 s in all, 4 s at concurrency 4, in tests/e2e/test_endpoint_faults.py's fault server).
BREAKER = 1 + RETRIES


class EndpointError(PricerError):
    """A server that cannot be used, or a run with items it did not answer."""

    def __init__(self, text: str) -> None:
        super().__init__(redacted(text))  # a server's message may quote a URL with its password


class Stop(Exception):
    """A failure asking again cannot mend (a 4xx other than 408/429): the run stops at once."""


class _Transient(Exception):
    """One try failed in a way another may mend; `connection` counts toward the breaker."""

    def __init__(self, text: str, *, connection: bool = False, wait: float | None = None) -> None:
        super().__init__(text)
        self.connection, self.wait = connection, wait


class EndpointClient:
    """HTTP to one server until its deadline (from when the client is made: the health and identity checks count):
    tries again after connection errors, read timeouts and TRANSIENT statuses, waiting `backoff` * 2**k seconds (or
    the server's Retry-After, at most RETRY_AFTER_CAP); `cancel` ends every wait at once. One Session per thread."""

    def __init__(self, url: str, *, read_timeout: float = DEFAULT_READ_TIMEOUT, retries: int = RETRIES,
                 backoff: float = BACKOFF, pool: int = DEFAULT_CONCURRENCY, deadline: float = DEFAULT_DEADLINE,
                 login: tuple[str, str] | None = None) -> None:
        self.url = url.rstrip("/")
        # Credentials are sent, never kept where a record or message could show them: URLs here have none.
        self._login, self._key = login, os.environ.get(API_KEY_ENV) or None
        if self._login and self._key:
            raise EndpointError(f"{self.url}: the URL has a user:password and ${API_KEY_ENV} is set; give one "
                                "(the key is sent as Authorization: Bearer, the password as Basic)")
        self.root = self.url.removesuffix("/v1")
        self.read_timeout, self.retries, self.backoff, self.pool = read_timeout, retries, backoff, pool
        self.deadline, self.end = deadline, time.monotonic() + deadline
        self.cancel = threading.Event()  # set when the run has ended: every wait and retry stops
        self._local = threading.local()
        self._lock = threading.Lock()
        self._refused = 0  # connection failures in a row, across threads; BREAKER of them open the breaker
        self.system_fingerprints: set[str] = set()  # what OpenAI-style servers say of their build, per answer
        self.answer_models: set[str] = set()  # the model each completion says answered it

    def _session(self):  # -> requests.Session
        session = getattr(self._local, "session", None)
        if session is None:
            import requests
            from requests.adapters import HTTPAdapter

            session = requests.Session()
            if self._key:
                session.headers["Authorization"] = f"Bearer {self._key}"
            elif self._login:
                session.auth = self._login  # HTTP Basic, as curl sends a URL's user:password
            for scheme in ("http://", "https://"):
                session.mount(scheme, HTTPAdapter(max_retries=0, pool_maxsize=self.pool))  # retries are ours
            self._local.session = session
        return session

    @property
    def deadline_text(self) -> str:
        return f"the run's deadline ({self.deadline:g} s, --pricer-endpoint-deadline) passed"

    @property
    def broken(self) -> str | None:
        """Why no request is sent any more (the deadline, the breaker, the run ended), or None."""
        if self._refused >= BREAKER:
            return (f"the circuit breaker is open ({self._refused} connections in a row failed; the server is down "
                    "or unreachable): nothing more is asked")
        if self.cancel.is_set():
            return "not asked: the run stopped"
        if time.monotonic() >= self.end:
            return self.deadline_text
        return None

    def request(self, method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """(status, parsed JSON or None), tried again while transient; an unreachable server, a broken body, the
        deadline or the breaker raise EndpointError naming the URL."""
        failure = ""
        for attempt in range(self.retries + 1):
            why = self.broken
            if why:
                raise EndpointError(f"{url}: {why}" + (f"; last: {failure}" if failure else ""))
            try:
                status, answer, retry_after = self._once(method, url, body)
            except _Transient as exc:
                failure, wait = str(exc), None
                with self._lock:
                    self._refused = self._refused + 1 if exc.connection else 0
            else:
                with self._lock:
                    self._refused = 0
                if status not in TRANSIENT or attempt == self.retries:
                    return status, answer
                failure, wait = f"HTTP {status}: {server_message(answer)}", retry_after
            if attempt < self.retries:
                self._wait(self.backoff * 2 ** attempt if wait is None else min(wait, RETRY_AFTER_CAP), url, failure)
        raise EndpointError(f"{url}: {failure}, {self.retries} retries")

    def _wait(self, seconds: float, url: str, failure: str) -> None:
        """Sleep before the next try, unless the deadline comes first (then fail now) or the run ends."""
        if time.monotonic() + seconds >= self.end:
            raise EndpointError(f"{url}: {failure}; the next try, in {seconds:g} s, would come after the run's "
                                f"deadline ({self.deadline:g} s, --pricer-endpoint-deadline)")
        if self.cancel.wait(seconds):
            raise EndpointError(f"{url}: not asked: the run stopped")

    def _once(self, method: str, url: str, body: dict[str, Any] | None) -> tuple[int, Any, float | None]:
        """One try: (status, parsed body, Retry-After seconds); _Transient when another try may mend it."""
        import requests

        left = max(self.end - time.monotonic(), 0.1)
        timeout = (min(CONNECT_TIMEOUT, left), min(self.read_timeout, left))
        try:
            with self._session().request(method, url, json=body, timeout=timeout, stream=True) as response:
                content = self._read(response, url)
                status, headers = response.status_code, response.headers
        except requests.exceptions.Timeout as exc:
            if left < max(CONNECT_TIMEOUT, self.read_timeout) and time.monotonic() >= self.end:
                raise EndpointError(f"{url}: {self.deadline_text} while waiting for the server") from None
            if isinstance(exc, requests.exceptions.ConnectTimeout):
                raise _Transient(f"cannot connect within {timeout[0]:g} s", connection=True) from None
            raise _Transient(f"no answer within {timeout[1]:g} s (--pricer-endpoint-timeout)") from None
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
            raise EndpointError(f"{url}: the answer broke off ({_reason(exc)})") from None
        except requests.exceptions.ConnectionError as exc:
            raise _Transient(f"cannot connect ({_reason(exc)})", connection=True) from None
        except requests.exceptions.RequestException as exc:
            raise EndpointError(f"{url}: {_reason(exc)}") from None
        retry_after = _seconds(headers.get("Retry-After"))
        if not content:
            return status, None, retry_after
        import json

        try:
            return status, json.loads(content), retry_after
        except ValueError:
            if status < 400:
                raise EndpointError(f"{url}: HTTP {status} with a body that is not JSON: {content[:120]!r}") from None
            return status, content.decode(errors="replace")[:300], retry_after

    def _read(self, response: Any, url: str) -> bytes:
        """The body, up to MAX_BODY and the deadline: a body that goes on is cut there and raises EndpointError."""
        chunks, size = [], 0
        for chunk in response.iter_content(64 * 1024):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_BODY:
                raise EndpointError(f"{url}: the answer goes on past {MAX_BODY // 1024} KiB, which no completion "
                                    "needs; cut there")
            if time.monotonic() >= self.end or self.cancel.is_set():
                raise EndpointError(f"{url}: {self.broken or self.deadline_text} while the answer was read")
        return b"".join(chunks)

    def completion(self, body: dict[str, Any]) -> str:
        """One completion's text; transient failures that outlast the retries raise EndpointError, others Stop."""
        url = f"{self.url}/completions"
        status, answer = self.request("POST", url, body)
        if status in TRANSIENT:
            raise EndpointError(f"{url}: HTTP {status} after {self.retries} retries: {server_message(answer)}")
        if status >= 400:
            raise Stop(f"{url}: HTTP {status}: {server_message(answer)}")
        try:
            text = answer["choices"][0]["text"]
        except (TypeError, KeyError, IndexError):
            text = None
        if not isinstance(text, str):
            raise EndpointError(f"{url}: an answer without choices[0].text: {str(answer)[:200]}")
        named = answer.get("model")
        if named is not None and str(named) != body["model"]:
            raise Stop(f"{url}: the answer names model {str(named)[:200]!r}, not {body['model']!r} that was asked for "
                       "and checked in /v1/models: the server answers with another model")
        if named is not None:
            self.answer_models.add(str(named))
        if answer.get("system_fingerprint"):
            self.system_fingerprints.add(str(answer["system_fingerprint"]))
        return text


def _seconds(value: str | None) -> float | None:
    """Retry-After in seconds (RFC 9110: a number of seconds or an HTTP date), None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError):
            return None


def _reason(exc: Exception) -> str:
    """The innermost cause urllib3 wraps (e.g. 'Connection refused'), not the whole chain of reprs."""
    inner = exc.args[0] if exc.args else exc
    reason = getattr(inner, "reason", None) or inner
    return str(reason).split(": ", 1)[-1][:200]


def server_message(answer: Any) -> str:
    """The server's own words: OpenAI's error.message, FastAPI's detail, or the body."""
    if isinstance(answer, dict):
        error = answer.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for key in ("detail", "message", "error"):
            if answer.get(key):
                return str(answer[key])
    return str(answer)[:300]
