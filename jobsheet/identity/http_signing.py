"""HTTP Message Signatures (RFC 9421) with Ed25519: how a user signs an API request, and how the
API checks it.

A signed request covers ``@method``, ``@target-uri`` (the URL as the user called it, under
``JOBSHEET_API_URL``), a ``Content-Digest`` (RFC 9530, sha-256) of the body (also of an empty
one), ``Idempotency-Key`` when the request carries one, and the parameters ``created``,
``keyid`` and ``alg``. The key id names the user and their registered key, ``<user>/<key id>``,
so the API finds the key without any other header. Signing and verifying use the
``http-message-signatures`` package; this module only fixes the profile.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import http_sf
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    InvalidSignature,
    algorithms,
)

from jobsheet.identity.keys import PUBLIC_KEY_BYTES, Identity, PublicKeyRecord, strict_b64decode

SIGNATURE_LABEL = "jobsheet"
SIGNATURE_TAG = "jobsheet-api"
BASE_COMPONENTS = ("@method", "@target-uri")
IDEMPOTENCY_HEADER = "idempotency-key"
MAX_SKEW = dt.timedelta(minutes=5)


def key_label(user: str, key_id: str) -> str:
    """The ``keyid`` a request names: the user and one of their registered keys."""
    return f"{user}/{key_id}"


class _OneKey(HTTPSignatureKeyResolver):
    def __init__(self, private: Any = None, public: Any = None) -> None:
        self._private = private
        self._public = public

    def resolve_private_key(self, key_id: str) -> Any:
        return self._private

    def resolve_public_key(self, key_id: str) -> Any:
        return self._public


def sign_request(
    message: Any, identity: Identity, body: bytes, *, now: dt.datetime | None = None
) -> None:
    """Sign ``message`` (anything with ``method``, ``url`` and mutable ``headers``, such as an
    ``httpx.Request``) in place as ``identity``, covering ``body``."""
    covered = list(BASE_COMPONENTS)
    if IDEMPOTENCY_HEADER in {name.lower() for name in message.headers}:
        covered.append(IDEMPOTENCY_HEADER)
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519, key_resolver=_OneKey(private=identity.private_key)
    )
    signer.sign(
        message,
        key_id=key_label(identity.name, identity.key_id),
        created=now or dt.datetime.now(dt.UTC),
        label=SIGNATURE_LABEL,
        tag=SIGNATURE_TAG,
        covered_component_ids=covered,
        body=body,
    )


class SignatureProblem(Exception):
    """Why a request's signature is refused; ``reason`` is a short name a caller can act on."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class RequestToVerify:
    """The parts of an incoming request the verifier reads (method, URL as signed, headers)."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)


def claimed_signer(headers: Mapping[str, str]) -> tuple[str, str, dt.datetime]:
    """(user, key id, created) that the ``Signature-Input`` header claims; checked later.

    Raises :class:`SignatureProblem` ``SignatureMissing`` or ``SignatureMalformed``.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    if "signature-input" not in lowered or "signature" not in lowered:
        raise SignatureProblem(
            "SignatureMissing",
            "this request is not signed: sign it with your key (HTTP Message Signatures, "
            "RFC 9421; the SDK and CLI do this for you)",
        )
    try:
        parsed: Any = http_sf.parse(lowered["signature-input"].encode(), tltype="dictionary")
        params = parsed[SIGNATURE_LABEL][1]
        keyid = params["keyid"]
        created = params["created"]
    except Exception:
        raise SignatureProblem(
            "SignatureMalformed",
            f"the Signature-Input header has no well-formed {SIGNATURE_LABEL!r} signature "
            "naming keyid and created",
        ) from None
    if not isinstance(keyid, str) or "/" not in keyid or not isinstance(created, int):
        raise SignatureProblem(
            "SignatureMalformed", "keyid must be '<user>/<key id>' and created an integer"
        )
    user, _, key_id = keyid.partition("/")
    return user, key_id, dt.datetime.fromtimestamp(created, dt.UTC)


def check_freshness(created: dt.datetime, now: dt.datetime, *, max_skew: dt.timedelta) -> None:
    """Refuse a signature created more than ``max_skew`` before or after ``now``."""
    if abs((now - created).total_seconds()) > max_skew.total_seconds():
        raise SignatureProblem(
            "SignatureStale",
            f"the signature was created at {created.isoformat()}, more than "
            f"{int(max_skew.total_seconds())}s from the server's clock ({now.isoformat()}); "
            "sign again (and check your clock)",
        )


def verify_request(
    request: RequestToVerify,
    body: bytes,
    *,
    key: PublicKeyRecord,
    max_skew: dt.timedelta = MAX_SKEW,
) -> None:
    """Verify the request's ``jobsheet`` signature with ``key``: method, target URI, the body's
    Content-Digest and (when sent) the Idempotency-Key must be covered and unchanged."""
    try:
        raw_key = strict_b64decode(key.public_key, size=PUBLIC_KEY_BYTES, what="the key")
    except ValueError:
        raise SignatureProblem(
            "SignatureInvalid", "the signing key is not a canonical Ed25519 public key"
        ) from None
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.ED25519,
        key_resolver=_OneKey(public=Ed25519PublicKey.from_public_bytes(raw_key)),
    )
    verifier.max_clock_skew = max_skew
    required = list(BASE_COMPONENTS)
    if IDEMPOTENCY_HEADER in {name.lower() for name in request.headers}:
        required.append(IDEMPOTENCY_HEADER)
    try:
        results = verifier.verify(
            request,
            max_age=dt.timedelta(0),
            expect_tag=SIGNATURE_TAG,
            require_components=required,
        )
    except InvalidSignature as exc:
        raise SignatureProblem(
            "SignatureInvalid",
            "the signature does not verify: the request was changed after it was signed, or "
            f"signed for another URL{f' ({exc})' if str(exc) else ''}",
        ) from None
    try:
        verifier.verify_body(request, results, body)
    except InvalidSignature:
        raise SignatureProblem(
            "BodyChanged",
            "the body does not match the signed Content-Digest: it was changed after signing",
        ) from None
