"""A smoke activity that proves the worker reaches the object store."""

from __future__ import annotations

import hashlib
import io

from minio import Minio
from pydantic import BaseModel
from temporalio import activity


class SmokeObjectInput(BaseModel):
    bucket: str
    key: str
    content: str


class SmokeObjectResult(BaseModel):
    key: str
    size: int
    sha256: str
    read_back: str


class SmokeActivities:
    """Activities bound to one S3 client, created once per worker."""

    def __init__(self, s3: Minio) -> None:
        self._s3 = s3

    @activity.defn
    def write_and_read_object(self, request: SmokeObjectInput) -> SmokeObjectResult:
        """Put an object, read it back and return what was stored (idempotent: same key, same bytes)."""
        data = request.content.encode()
        self._s3.put_object(request.bucket, request.key, io.BytesIO(data), len(data))
        response = self._s3.get_object(request.bucket, request.key)
        try:
            read_back = response.read()
        finally:
            response.close()
            response.release_conn()
        return SmokeObjectResult(
            key=request.key,
            size=len(read_back),
            sha256=hashlib.sha256(read_back).hexdigest(),
            read_back=read_back.decode(),
        )
