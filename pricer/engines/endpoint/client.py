"""HTTP to one served model: requests with urllib3's retries of transient failures only, one completion asked,
and failures said in words (EndpointError), or Stop for those asking again cannot mend."""

from __future__ import annotations

import threading
from typing import Any

from pricer.engines.endpoint.config import BACKOFF, DEFAULT_CONCURRENCY, DEFAULT_READ_TIMEOUT, RETRIES
from pricer.errors import PricerError

CONNECT_TIMEOUT = 10.0  # seconds: a server that does not accept a connection in this time is down or unreachable
# Statuses worth asking again: request timeout, too many requests, and server-side failures. Any other 4xx says the
# request itself is wrong (bad model id, bad field): asking again would only repeat it, so the run stops.
TRANSIENT = (408, 429, 500, 502, 503, 504)


class EndpointError(PricerError):
    """A server that cannot be used, or a run with items it did not answer."""


class Stop(Exception):
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
        if answer.get("system_fingerprint"):
            self.system_fingerprints.add(str(answer["system_fingerprint"]))
        return text


def _reason(exc: Exception) -> str:
    """The innermost cause urllib3 wraps (e.g. 'Read timed out.'), not the whole chain of reprs."""
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
