"""The operator's keys as the ledger workers trust them: a trust anchor outside Temporal.

Deposits, overdraft limits and revocations of other users' keys are signed by the operator.
Ledger workers check them against the keys their own configuration names, so a program that
reaches Temporal cannot make itself the operator, not even by terminating the operator's
registry workflow and starting it again with a key of its own:

1. ``JOBSHEET_OPERATOR_PUBLIC_KEYS``: base64 Ed25519 public keys, comma-separated (a
   deployment sets this; ``python -m jobsheet.ops.bootstrap`` prints the key to set);
2. else the operator's key file in the state directory, ``keys/<operator>.json`` (the local
   stack writes it there);
3. else ``None``: the operator's keys are read from the user registry, which trusts whoever
   can reach Temporal. Workers log this once at start.
"""

from __future__ import annotations

from datetime import UTC, datetime

from jobsheet.core.settings import Settings
from jobsheet.identity.keys import (
    PUBLIC_KEY_BYTES,
    IdentityError,
    PublicKeyRecord,
    key_id_for,
    key_path,
    load_identity,
    strict_b64decode,
)

ANCHOR_VALID_FROM = datetime(2000, 1, 1, tzinfo=UTC)


class BadOperatorKey(ValueError):
    """A configured operator key that is not a base64 Ed25519 public key."""


def anchored_record(public_key: str) -> PublicKeyRecord:
    """A trusted key record for a configured public key (signs from any time on)."""
    try:
        raw = strict_b64decode(public_key, size=PUBLIC_KEY_BYTES)
    except ValueError:
        raise BadOperatorKey(
            "JOBSHEET_OPERATOR_PUBLIC_KEYS must list canonical base64 Ed25519 public keys "
            "(32 bytes each)"
        ) from None
    return PublicKeyRecord(
        key_id=key_id_for(raw), public_key=public_key, valid_from=ANCHOR_VALID_FROM
    )


def trusted_operator_keys(settings: Settings) -> list[PublicKeyRecord] | None:
    """The operator's keys from this process's configuration, or None when it names none."""
    configured = [key.strip() for key in settings.operator_public_keys.split(",") if key.strip()]
    if configured:
        return [anchored_record(key) for key in configured]
    if key_path(settings.operator_user, settings.state_dir).exists():
        try:
            identity = load_identity(settings.operator_user, config_dir=settings.state_dir)
        except (IdentityError, ValueError, KeyError):
            return None
        return [anchored_record(identity.public_record().public_key)]
    return None
