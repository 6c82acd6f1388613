"""What a server says of itself before the first request: healthy, the model id it serves (the one named must be
among them), its engine's version; recorded in the run's fingerprint."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from pricer.engines.endpoint.client import EndpointClient, EndpointError, server_message

HEALTH_PATHS = ("/health",)  # vLLM, SGLang, TGI, llama.cpp and `transformers serve` all answer it
# Where engines say their version: vLLM and SGLang /version, TGI /info, llama.cpp /props; llama-cpp-python only in
# its FastAPI schema's title and version ("🦙 llama.cpp Python API 0.3.36").
VERSION_PATHS = ("/version", "/info", "/props", "/openapi.json")
DEFAULT_SCHEMA_TITLE = "FastAPI"  # a FastAPI app that names nothing (transformers serve): no version said
MODEL_OPTION = "--pricer-endpoint-model; pricer eval: --endpoint-model"


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


def identify(client: EndpointClient, wanted: str | None) -> ServerIdentity:
    """Health check, the served model ids (the one named must be among them) and the engine's version."""
    for path in HEALTH_PATHS:
        status, body = client.request("GET", client.root + path)
        if status >= 400 and status != 404:  # a server without /health is judged by /v1/models alone
            raise EndpointError(f"{client.root}{path}: the server is not healthy "
                                f"(HTTP {status}: {server_message(body)})")
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
    if machine_path(wanted):
        raise EndpointError(f"{url}: the server names its model by a path on its machine ({wanted!r}), which a "
                            "baseline must not record: start it with a name (llama-cpp-python --model_alias NAME, "
                            f"llama-server --alias NAME, vllm --served-model-name NAME) and give that NAME ({MODEL_OPTION})")
    entry = served[wanted]
    root = _text(entry.get("root"))
    return ServerIdentity(url=client.url, model=wanted, root=PurePath(root).name if machine_path(root) else root,
                          owned_by=_text(entry.get("owned_by")), engine_version=_version(client))


def machine_path(name: str | None) -> bool:
    """Whether a served name is a file's path on the server's machine (/models/x.gguf, ~/m, C:\\m, ./m), not a
    name the same on every machine (org/model)."""
    return bool(name) and bool(re.match(r"(/|~|\.{1,2}/|\\\\|[A-Za-z]:[\\/])", name) or name.lower().endswith(".gguf"))


def other_engine(baseline: Mapping[str, Any], run: Mapping[str, Any]) -> str | None:
    """Why a served run must not be judged against, nor rewrite, this baseline: another engine made it (llama.cpp
    and `transformers serve` giving one model the same name land in one folder); None when the same did, or the
    baseline was not served."""
    before, now = baseline.get("endpoint_owned_by"), run.get("endpoint_owned_by")
    if "endpoint_owned_by" not in baseline or before == now:
        return None
    return (f"this baseline was made by a server whose /v1/models says owned_by {before!r} "
            f"({baseline.get('engine_version') or 'no version said'}); this one says {now!r} "
            f"({run.get('engine_version') or 'no version said'}): another engine shares the name "
            f"{run.get('model')!r}. Serve it under its own name (llama-cpp-python --model_alias, llama-server "
            f"--alias) and give that name ({MODEL_OPTION}), or judge it against this baseline on purpose with "
            "--pricer-baseline-name")


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
                if isinstance(body.get(key), (str, int, float)) and body[key]:
                    return str(body[key])
            info = body.get("info")
            if isinstance(info, dict) and info.get("title") not in (None, DEFAULT_SCHEMA_TITLE):
                return f"{info['title']} {info.get('version', '')}".strip()
    return None
