"""The S3 client factory: one place that knows endpoints, region and credentials.

Two clients exist on purpose. The *internal* client talks to S3 at the address services use.
The *presign* client is configured with the *public* endpoint and an explicit region, so that
presigned URLs carry the host users reach and presigning never makes a network call.
"""

from __future__ import annotations

from minio import Minio
from minio.error import InvalidResponseError, S3Error

from jobsheet.core.settings import Settings

NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchObject", "ResourceNotFound"})
"""The codes S3 servers answer for a missing object (MinIO, AWS and rclone spell it differently)."""

MissingOrError = (S3Error, InvalidResponseError)
"""What minio raises for an answer that may say "no such object": catch these, ask :func:`is_not_found`."""


def is_not_found(exc: Exception) -> bool:
    """Does ``exc`` say there is no such object? Also a 404 whose XML minio could not parse
    (rclone answers some missing objects that way)."""
    if isinstance(exc, S3Error):
        return exc.code in NOT_FOUND_CODES
    if isinstance(exc, InvalidResponseError):
        return getattr(exc, "_code", None) == 404
    return False


def _client(settings: Settings, endpoint: str) -> Minio:
    access, secret = settings.s3_credentials()
    return Minio(
        endpoint,
        access_key=access,
        secret_key=secret,
        secure=settings.s3_secure,
        region=settings.s3_region,
    )


def internal_client(settings: Settings) -> Minio:
    """A client for server-side operations (put, get, delete, list)."""
    return _client(settings, settings.s3_endpoint_resolved)


def presign_client(settings: Settings) -> Minio:
    """A client whose only job is to sign URLs for the public endpoint, offline."""
    return _client(settings, settings.s3_public_endpoint_resolved)


def compute_presign_client(settings: Settings) -> Minio:
    """A signer for the PARs compute workers use (input reads, output writes), offline."""
    return _client(settings, settings.s3_compute_endpoint_resolved)


def ensure_bucket(client: Minio, bucket: str) -> bool:
    """Create ``bucket`` unless it exists; return True when it was created."""
    if client.bucket_exists(bucket):
        return False
    client.make_bucket(bucket)
    return True
