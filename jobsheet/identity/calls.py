"""How the user registry's workflow is called: its name, start input, state, updates and queries.

The user workflow (workflows/user.py) is named with these and started with this input; the
registry client (jobsheet/identity/registry.py), which activities use too and so cannot import
a workflow, calls its handlers through these declarations (checked against the workflow by
tests/contracts/test_workflow_calls.py).
"""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, Field

from jobsheet.contracts.workflow_calls import Query, Update
from jobsheet.identity.keys import PublicKeyRecord
from jobsheet.identity.models import RegisterKeyInput, RevokeKeyInput, UseNonceInput

USER_WORKFLOW = "UserWorkflow"


class NonceUse(BaseModel):
    idempotency_key: str
    issued_at: AwareDatetime


class UserState(BaseModel):
    name: str
    keys: list[PublicKeyRecord]
    nonces: dict[str, NonceUse] = Field(default_factory=dict)
    remembered: dict[str, AwareDatetime] = Field(default_factory=dict)


class UserInput(BaseModel):
    """Start input: the user and their first key (``state`` only on continue-as-new)."""

    name: str
    key: PublicKeyRecord
    continue_as_new_after: int = Field(default=500, ge=1)
    state: UserState | None = None


KEYS: Query[list[PublicKeyRecord]] = Query("keys", list[PublicKeyRecord])
REGISTER_KEY: Update[RegisterKeyInput, list[PublicKeyRecord]] = Update(
    "register_key", list[PublicKeyRecord]
)
REVOKE_KEY: Update[RevokeKeyInput, PublicKeyRecord] = Update("revoke_key", PublicKeyRecord)
USE_NONCE: Update[UseNonceInput, None] = Update("use_nonce", type(None))
