"""Moving bytes through PARs: stream a file up a presigned PUT, stream outputs down and verify.

Neither direction holds a whole file in memory or needs storage credentials: the URL is the only
credential. Uploads send an explicit Content-Length (S3 refuses chunked presigned PUTs).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import httpx

from jobsheet.sdk.errors import BadInput, IntegrityError, Refused, Unavailable

CHUNK_SIZE = 1 << 20
TIMEOUT = httpx.Timeout(60.0, connect=10.0)


@dataclass(frozen=True)
class TransferProgress:
    """One step of a transfer: ``done`` of ``total`` bytes of ``name`` have moved."""

    name: str
    done: int
    total: int


ProgressCallback = Callable[[TransferProgress], None]


@dataclass(frozen=True)
class FileDigest:
    size: int
    sha256: str


def input_size(path: Path) -> int:
    """The size of an input file; a readable error when it is missing."""
    if not path.is_file():
        raise BadInput(f"input file {path} does not exist or is not a file", reason="NoInputFile")
    return path.stat().st_size


def file_digest(path: Path) -> FileDigest:
    """Size and sha256 of a file, read in chunks; a readable error when it is missing."""
    input_size(path)
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
    return FileDigest(size=size, sha256=digest.hexdigest())


def _refusal(what: str, response: httpx.Response) -> Refused:
    text = " ".join(response.text.split())[:300]
    if response.status_code == 403 and "expired" in text.lower():
        return Refused(f"{what} was refused: the PAR has expired", reason="Expired")
    return Refused(
        f"{what} was refused with HTTP {response.status_code}: {text or response.reason_phrase}",
        reason=f"HTTP{response.status_code}",
    )


async def upload_file(
    url: str,
    path: Path,
    *,
    progress: ProgressCallback | None = None,
    http: httpx.AsyncClient | None = None,
) -> int:
    """PUT ``path`` to the presigned ``url`` in chunks; return the number of bytes sent."""
    total = input_size(path)
    name = path.name

    async def chunks() -> AsyncIterator[bytes]:
        done = 0
        if progress is not None:
            progress(TransferProgress(name, 0, total))
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK_SIZE):
                done += len(chunk)
                yield chunk
                if progress is not None:
                    progress(TransferProgress(name, done, total))

    async with _client(http) as client:
        try:
            response = await client.put(
                url, content=chunks(), headers={"Content-Length": str(total)}
            )
        except httpx.TransportError as exc:
            raise Unavailable(f"the upload could not reach storage: {exc}") from None
    if response.status_code >= 300:
        raise _refusal("the upload", response)
    return total


def output_path(directory: Path, key: str, prefix: str) -> Path:
    """Where output ``key`` goes under ``directory``: its path relative to the output prefix."""
    relative = PurePosixPath(key.removeprefix(prefix))
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise IntegrityError(f"refusing to write output {key!r} outside {directory}")
    return directory.joinpath(*relative.parts)


async def download_file(
    url: str,
    destination: Path,
    *,
    size: int,
    sha256: str,
    progress: ProgressCallback | None = None,
    http: httpx.AsyncClient | None = None,
) -> Path:
    """GET ``url`` into ``destination``, verifying ``size`` and ``sha256`` before it appears."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    digest = hashlib.sha256()
    done = 0
    name = destination.name
    async with _client(http) as client:
        try:
            async with client.stream("GET", url) as response:
                if response.status_code >= 300:
                    await response.aread()
                    raise _refusal(f"the download of {name}", response)
                with partial.open("wb") as handle:
                    if progress is not None:
                        progress(TransferProgress(name, 0, size))
                    async for chunk in response.aiter_bytes(CHUNK_SIZE):
                        handle.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(TransferProgress(name, done, size))
        except httpx.TransportError as exc:
            partial.unlink(missing_ok=True)
            raise Unavailable(f"the download of {name} could not reach storage: {exc}") from None
    if done != size or digest.hexdigest() != sha256:
        partial.unlink(missing_ok=True)
        raise IntegrityError(
            f"{name}: got {done} bytes with sha256 {digest.hexdigest()}, "
            f"but the manifest promised {size} bytes with sha256 {sha256}"
        )
    os.replace(partial, destination)
    return destination


class _client:
    """Use the caller's client, or a fresh one closed afterwards."""

    def __init__(self, http: httpx.AsyncClient | None) -> None:
        self._given = http
        self._own: httpx.AsyncClient | None = None

    async def __aenter__(self) -> httpx.AsyncClient:
        if self._given is not None:
            return self._given
        self._own = httpx.AsyncClient(timeout=TIMEOUT)
        return self._own

    async def __aexit__(self, *_exc: object) -> None:
        if self._own is not None:
            await self._own.aclose()
