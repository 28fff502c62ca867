"""Moving bytes through PARs: stream a file up a presigned PUT, stream outputs down and verify.

Neither direction holds a whole file in memory or needs storage credentials: the URL is the only
credential. Uploads send an explicit Content-Length (S3 refuses chunked presigned PUTs).
"""

from __future__ import annotations

import asyncio
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


NO_INPUT = FileDigest(size=0, sha256=hashlib.sha256(b"").hexdigest())
"""What a job whose calculation reads no input promises: an empty object."""


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


async def upload_nothing(url: str, *, http: httpx.AsyncClient | None = None) -> int:
    """PUT an empty object to the presigned ``url``: the input of a calculation that reads none
    (the job still takes its upload, so that its input is checked like any other)."""
    async with _client(http) as client:
        try:
            response = await client.put(url, content=b"", headers={"Content-Length": "0"})
        except httpx.TransportError as exc:
            raise Unavailable(f"the upload could not reach storage: {exc}") from None
    if response.status_code >= 300:
        raise _refusal("the upload", response)
    return 0


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
) -> Path:
    """GET ``url`` into ``destination``, verifying ``size`` and ``sha256`` before it appears.

    The transfer runs in a worker thread with blocking reads, which keeps pace with a direct S3
    get (see bench/transfer.py); ``progress`` is still called on the caller's event loop.
    """
    loop = asyncio.get_running_loop()
    name = destination.name

    def report(done: int) -> None:
        if progress is not None:
            loop.call_soon_threadsafe(progress, TransferProgress(name, done, size))

    partial = destination.with_name(destination.name + ".part")
    try:
        done, digest = await asyncio.to_thread(_fetch, url, partial, report)
    except httpx.TransportError as exc:
        await asyncio.to_thread(partial.unlink, missing_ok=True)
        raise Unavailable(f"the download of {name} could not reach storage: {exc}") from None
    if done != size or digest != sha256:
        await asyncio.to_thread(partial.unlink, missing_ok=True)
        raise IntegrityError(
            f"{name}: got {done} bytes with sha256 {digest}, "
            f"but the manifest promised {size} bytes with sha256 {sha256}"
        )
    os.replace(partial, destination)
    return destination


def _fetch(url: str, partial: Path, report: Callable[[int], None]) -> tuple[int, str]:
    """Stream ``url`` into ``partial``; return (bytes, sha256 hex)."""
    partial.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    done = 0
    with httpx.Client(timeout=TIMEOUT) as client, client.stream("GET", url) as response:
        if response.status_code >= 300:
            response.read()
            raise _refusal(f"the download of {partial.name.removesuffix('.part')}", response)
        with partial.open("wb") as handle:
            report(0)
            for chunk in response.iter_bytes(CHUNK_SIZE):
                handle.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                report(done)
    return done, digest.hexdigest()


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
