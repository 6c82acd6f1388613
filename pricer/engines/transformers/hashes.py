"""The sha256 of a model's files: each file hashed once per process, or read off a hub cache's blob name."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from pricer.errors import ModelError


def _sha256_file_uncached(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=64)
def _sha256_keyed(path: str, size: int, mtime_ns: int) -> str:
    # Keyed by size and mtime as well as the path, so a rewritten file is hashed again.
    return _sha256_file_uncached(Path(path))


def sha256_file(path: Path) -> str:
    """The file's sha256, hashed once per process while the file is unchanged."""
    real = Path(path).resolve()
    stat = real.stat()
    return _sha256_keyed(str(real), stat.st_size, stat.st_mtime_ns)


def _hub_blob_sha256(path: Path) -> str | None:
    # Files in a Hugging Face cache snapshot link to blobs named by their sha256, which the hub client checked
    # on download (https://huggingface.co/docs/huggingface_hub/guides/manage-cache): no need to hash again.
    if not path.is_symlink():
        return None
    blob = path.resolve()
    name = blob.name
    if blob.parent.name == "blobs" and len(name) == 64 and all(c in "0123456789abcdef" for c in name):
        return name
    return None


# Every file beside the weights that decides an answer: the architecture and its settings, how greedy decoding
# stops and penalizes (generation_config.json), how text becomes tokens and back, and the chat template.
MODEL_FILES = (
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "added_tokens.json", "chat_template.jinja", "chat_template.json", "vocab.json", "merges.txt", "tokenizer.model",
)


# How a fingerprint names them: "model_files/generation_config.json", "adapter_files/adapter_config.json".
MODEL_FILES_PREFIX, ADAPTER_FILES_PREFIX = "model_files/", "adapter_files/"


def files_sha256(folder: Path, names: tuple[str, ...], *, prefix: str) -> tuple[tuple[str, str], ...]:
    """(prefix + name, sha256) of each of `names` present in `folder`, in the order given, as a fingerprint records them."""
    found = []
    for name in names:
        path = Path(folder) / name
        if path.is_file():
            found.append((prefix + name, _hub_blob_sha256(path) or sha256_file(path)))
    return tuple(found)


def weights_sha256(folder: Path) -> str:
    """sha256 of a model's safetensors: the file's own hash when there is one file, else a hash of name+hash lines."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise ModelError(f"{folder}: no .safetensors weights (pricer loads safetensors only)")
    hashes = [_hub_blob_sha256(f) or sha256_file(f) for f in files]
    if len(files) == 1:
        return hashes[0]
    lines = "".join(f"{f.name} {h}\n" for f, h in zip(files, hashes))
    return hashlib.sha256(lines.encode()).hexdigest()
