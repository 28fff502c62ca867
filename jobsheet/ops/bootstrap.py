"""The operator side of the local stack: an operator identity and the provider account.

The operator is ``settings.operator_user`` (``operator`` unless set): the user whose key signs
deposits, so the workers, which trust that name, accept the deposits this key signs.

``jobsheet stack up`` runs this once every server answers, as its own short-lived process
(``python -m jobsheet.ops.bootstrap``), so the stack code never runs an event loop or a
Temporal client inside its caller. It is idempotent: a user or account that already exists is
what we wanted.
"""

from __future__ import annotations

import asyncio
import json
import sys

from temporalio.exceptions import ApplicationError

from jobsheet.core.settings import Settings, load_settings
from jobsheet.core.temporal import connect, exit_without_teardown
from jobsheet.identity import registry
from jobsheet.identity.keys import ensure_identity, key_path
from jobsheet.ledger import operations as ledger
from jobsheet.ledger.errors import ACCOUNT_EXISTS, USER_EXISTS


async def bootstrap_operator(settings: Settings) -> dict[str, object]:
    """Register the operator and open the provider account unless they exist; say what was done."""
    identity = ensure_identity(settings.operator_user, config_dir=settings.state_dir)
    client = await connect(settings)
    queue = settings.task_queue_ledger
    created_user = created_account = True
    try:
        await registry.register_user(client, identity, task_queue=queue)
    except ApplicationError as exc:
        if exc.type != USER_EXISTS:
            raise
        created_user = False
    try:
        await ledger.open_account(
            client, owner=identity.name, task_queue=queue, account=settings.provider_account
        )
    except ApplicationError as exc:
        if exc.type != ACCOUNT_EXISTS:
            raise
        created_account = False
    return {
        "operator": identity.name,
        "operator_key": str(key_path(identity.name, settings.state_dir)),
        # What a deployment's ledger workers set as JOBSHEET_OPERATOR_PUBLIC_KEYS.
        "operator_public_key": identity.public_record().public_key,
        "provider_account": settings.provider_account,
        "created_user": created_user,
        "created_account": created_account,
    }


def main() -> None:
    """Print one JSON line of what was done; exit 1 with one line on stderr when it failed."""
    code = 0
    try:
        print(json.dumps(asyncio.run(bootstrap_operator(load_settings()))))
    except Exception as exc:
        print(f"operator bootstrap failed: {exc}", file=sys.stderr)
        code = 1
    exit_without_teardown(code)


if __name__ == "__main__":
    main()
