"""Storage-side read PARs: presigned GETs, signed offline with the presign client."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict

from jobsheet.core.objectstore import presign_client
from jobsheet.core.settings import Settings

MAX_PRESIGN = timedelta(days=7)


class ReadPar(BaseModel):
    """A presigned GET for one object: ``url`` is the secret, the rest is metadata."""

    model_config = ConfigDict(frozen=True)

    url: str
    key: str
    expires_at: AwareDatetime


def issue_read_par(settings: Settings, key: str, expires: timedelta) -> ReadPar:
    """Presign a GET of ``key`` in the settings' bucket, valid for ``expires`` (at most 7 days).

    Needs the S3 credentials, so only the storage side (never compute) calls it.
    """
    if not timedelta(seconds=1) <= expires <= MAX_PRESIGN:
        raise ValueError(f"a read PAR lasts between 1 second and 7 days, not {expires}")
    now = datetime.now(UTC).replace(microsecond=0)
    url = presign_client(settings).presigned_get_object(settings.bucket, key, expires=expires)
    return ReadPar(url=url, key=key, expires_at=now + expires)
