"""Seals on the files the train stage writes and a later run loads back (checkpoints in
`paths.work`, kept fits in MLflow's artifact store): what a file is (its fingerprint: the
settings it was written for) and its SHA-256, checked before a byte of it is deserialised.

A checkpoint's seal is a JSON sidecar beside it (`<file>.seal.json`, written atomically after
the file); a kept fit's is a tag on its MLflow run. A file without a seal, with another
fingerprint, or whose bytes changed since it was sealed is not loaded (as if absent). The seal
is integrity, not a signature: whoever can write both the file and its seal can forge one, so
loading also refuses arbitrary objects wherever the format allows (`torch.load(weights_only=True)`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

SIDECAR_SUFFIX = ".seal.json"


def sha256_of(path: str | Path) -> str:
    """The file's SHA-256 in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar(path: str | Path) -> Path:
    """Where the seal of the file at `path` is kept."""
    return Path(f"{path}{SIDECAR_SUFFIX}")


def write_seal(path: str | Path, fingerprint: str, content: str | Path | None = None) -> None:
    """Seal the file at `path` (its bytes read from `content` when it is still being moved
    into place): fingerprint and SHA-256, written atomically beside it."""
    seal = {"fingerprint": fingerprint, "sha256": sha256_of(content or path)}
    target = sidecar(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(seal), encoding="utf-8")
    os.replace(tmp, target)


def broken_seal(path: str | Path, fingerprint: str) -> str | None:
    """Why the file at `path` must not be loaded for `fingerprint` (None: its seal holds)."""
    try:
        seal = json.loads(sidecar(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "it has no readable seal"
    return mismatch(path, fingerprint, seal)


def mismatch(path: str | Path, fingerprint: str, seal: object) -> str | None:
    """Why `seal` (a parsed seal: fingerprint and sha256) does not vouch for the file at `path`
    written for `fingerprint` (None: it does)."""
    if not isinstance(seal, dict) or seal.get("fingerprint") != fingerprint:
        return "it is from other settings"
    if seal.get("sha256") != sha256_of(path):
        return "its content changed after it was written"
    return None


__all__ = ["SIDECAR_SUFFIX", "broken_seal", "mismatch", "sha256_of", "sidecar", "write_seal"]
