"""``make demo``: a paid job end to end on the local stack, as a newcomer would run one.

Brings the stack up (Temporal, S3, the worker and the PAR gateway; the operator and provider
account), makes a user and an account (once), deposits credit, submits the ``checksum``
calculation paid by cheque, uploads a generated input through the upload PAR, triggers the run
by POSTing the run PAR URL, watches the job to its end, downloads and checks the output, and
prints the balances before and after and the job's address in the Temporal Web UI. Running it
again reuses the stack, the user and the account.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import sys
import time
import traceback
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from temporalio.client import Client as TemporalClient
from temporalio.exceptions import ApplicationError

from jobsheet.cli.job_views import RunBar, transfer_bars
from jobsheet.identity import (
    Identity,
    IdentityError,
    generate_identity,
    load_identity,
    save_identity,
)
from jobsheet.jobs.models import JobState
from jobsheet.ledger import client as ledger
from jobsheet.ledger.errors import ACCOUNT_EXISTS, USER_EXISTS
from jobsheet.ledger.orders import load_operator
from jobsheet.sdk import Client
from jobsheet.settings import Settings, load_settings
from jobsheet.stack import Stack
from jobsheet.stack_services import local_settings
from jobsheet.temporal import exit_without_teardown

DEMO_USER = "demo"
INPUT_BYTES = 32 << 20
DEPOSIT = "10.00"
MAX_SPEND = "5.00"

console = Console()


def demo_input(directory: Path) -> tuple[Path, str]:
    """A generated input (the same bytes every time) and its sha256."""
    path = directory / "demo-input.bin"
    if not path.exists() or path.stat().st_size != INPUT_BYTES:
        directory.mkdir(parents=True, exist_ok=True)
        path.write_bytes(random.Random(42).randbytes(INPUT_BYTES))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


async def demo_user(client: TemporalClient, settings: Settings, name: str) -> Identity:
    """The demo user's key from the config dir (made and registered on the first run)."""
    try:
        identity = load_identity(name, config_dir=settings.config_dir)
    except IdentityError:
        identity = generate_identity(name)
        save_identity(identity, config_dir=settings.config_dir)
    try:
        await ledger.register_user(client, identity, task_queue=settings.task_queue_ledger)
        console.print(f"user [bold]{name}[/bold] registered (key {identity.key_id})")
    except ApplicationError as exc:
        if exc.type != USER_EXISTS:
            raise
        console.print(f"user [bold]{name}[/bold] exists")
    return identity


async def demo_account(client: TemporalClient, settings: Settings, owner: str) -> str:
    account = f"acct-{owner}"
    try:
        await ledger.open_account(
            client, owner=owner, account=account, task_queue=settings.task_queue_ledger
        )
        console.print(f"account [bold]{account}[/bold] opened")
    except ApplicationError as exc:
        if exc.type != ACCOUNT_EXISTS:
            raise
        console.print(f"account [bold]{account}[/bold] exists")
    return account


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "-"


async def balances(client: TemporalClient, *accounts: str) -> list[Decimal]:
    return [(await ledger.balance(client, account)).balance for account in accounts]


async def run_job(settings: Settings) -> None:
    sdk = await Client.connect(settings)
    temporal = sdk.temporal
    user = settings.user or DEMO_USER
    identity = await demo_user(temporal, settings, user)
    sdk = Client(temporal, settings, identity)
    account = await demo_account(temporal, settings, user)
    # The local stack's bootstrap keeps the operator's key in the state dir; it signs deposits.
    operator = load_operator(
        settings.operator_user, config_dir=settings.config_dir, state_dir=settings.state_dir
    )
    await ledger.deposit(temporal, account, DEPOSIT, operator=operator)
    provider = settings.provider_account
    before = await balances(temporal, account, provider)
    console.print(f"deposited {DEPOSIT}; balances: {account} {before[0]}, {provider} {before[1]}")

    work = settings.state_dir / "demo"
    source, digest = await asyncio.to_thread(demo_input, work)
    console.rule("submit: a checksum of a generated input, paid by cheque")
    job = await sdk.submit("checksum", {}, source, account, MAX_SPEND)
    console.print(f"job [bold]{job.uid}[/bold], paid for; run it by {_when(job.expires_at)}")
    with transfer_bars(console, enabled=True) as bars:
        await job.upload(progress=bars)
    console.print(f"POST {job.run_url}", soft_wrap=True, highlight=False)
    triggered = await job.run()
    console.print(f"HTTP {triggered.status}: {triggered.message}")
    final = None
    with RunBar(console, enabled=True) as bar:
        async for event in job.watch(interval=0.25):
            bar.show(event)
            final = event.sheet
    assert final is not None
    if final.state != JobState.SUCCEEDED:
        raise RuntimeError(f"the job ended as {final.state.value}: {final.error}")

    console.rule("download and check the output")
    with transfer_bars(console, enabled=True) as bars:
        paths = await job.download(work / job.uid, progress=bars)
    by_name = {path.name: path for path in paths}
    checksum = by_name["sha256.txt"].read_text().strip()
    if checksum != digest:
        raise RuntimeError(f"the job computed sha256 {checksum}, but the input's is {digest}")
    console.print(f"sha256 of the input, computed by the job: {checksum} [green](matches)[/green]")

    after = await balances(temporal, account, provider)
    costs = final.costs
    console.rule("money")
    console.print(f"held {costs.held}, charged {costs.charged}, refunded {costs.refunded}")
    console.print(f"{account}: {before[0]} -> {after[0]}")
    console.print(f"{provider}: {before[1]} -> {after[1]}")
    namespace = settings.temporal_connect_config()["namespace"]
    console.print(
        f"the job in the Temporal Web UI: [bold]{settings.web_ui_url}/namespaces/{namespace}"
        f"/workflows/{job.uid}[/bold]",
        soft_wrap=True,
    )


def main() -> int:
    settings = load_settings()
    began = time.monotonic()
    console.rule("jobsheet demo")
    console.print(f"state directory: {settings.state_dir}")
    Stack(settings).up(on_progress=console.print)
    console.print(f"stack ready in {time.monotonic() - began:.1f}s")
    asyncio.run(run_job(local_settings(settings)))
    console.rule(f"done in {time.monotonic() - began:.1f}s")
    console.print("stop the stack with `.venv/bin/jobsheet stack down` (data is kept)")
    return 0


if __name__ == "__main__":
    code = 1
    try:
        code = main()
    except Exception as exc:
        if "--debug" in sys.argv:
            traceback.print_exc()
        print(f"demo failed: {' '.join(str(exc).split())}", file=sys.stderr)
    exit_without_teardown(code)
