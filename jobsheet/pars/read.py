"""Storage-side read PARs: presigned GETs, signed offline with the presign client."""

from __future__ import annotations

from datetime import timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict

MAX_PRESIGN = timedelta(days=7)


class ReadPar(BaseModel):
    """A presigned GET for one object: ``url`` is the secret, the rest is metadata."""

    model_config = ConfigDict(frozen=True)

    url: str
    key: str
    expires_at: AwareDatetime
