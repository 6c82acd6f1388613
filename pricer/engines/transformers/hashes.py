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
