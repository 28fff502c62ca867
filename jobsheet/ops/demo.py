"""``make demo``: a paid job end to end on the local stack, as a newcomer would run one.

Brings the stack up (Temporal, S3, the worker and the public API; the operator and provider
account), then does a user's part through the public API only, with the SDK: makes a user and an
account (once), has the operator deposit credit (signed with the operator's key, which the stack
keeps in its state directory), submits the ``checksum`` calculation paid by cheque, uploads a
generated input through the upload PAR, triggers the run by POSTing the run PAR URL, watches the
job to its end, downloads and checks the output, prints the balances before and after, and ends
with three commands to try next (the job's sheet, the user's jobs, the job in the Temporal Web
UI), runnable as printed. Running it again reuses the stack, the user and the account.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import shlex
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from rich.console import Console

from jobsheet.cli.job_views import RunBar, transfer_bars
from jobsheet.core.settings import Settings, load_settings
from jobsheet.core.temporal import exit_without_teardown
from jobsheet.identity.keys import IdentityError, load_identity
from jobsheet.jobs.models import JobState
from jobsheet.ledger.orders import load_operator
from jobsheet.ops.services import local_settings
from jobsheet.ops.stack import Stack
from jobsheet.sdk import Client, NotFound, Unauthorised

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


async def demo_user(sdk: Client, name: str) -> None:
    """Sign the demo user up once; later runs find the key in the config dir, registered."""
    try:
        identity = load_identity(name, config_dir=sdk.settings.config_dir)
    except IdentityError:
        view = await sdk.signup(name)
        console.print(f"user [bold]{name}[/bold] registered (key {view.keys[-1].key_id})")
        return
    try:
        await sdk.keys(name)
    except (Unauthorised, NotFound):
        # The key is kept here but the deployment does not know it (its state was reset).
        await sdk.signup(identity=identity)
        console.print(f"user [bold]{name}[/bold] registered (key {identity.key_id})")
        return
    console.print(f"user [bold]{name}[/bold] exists")


async def demo_account(sdk: Client, owner: str) -> str:
    account = f"acct-{owner}"
    try:
        await sdk.balance(account)
    except NotFound:
        await sdk.open_account(account)
        console.print(f"account [bold]{account}[/bold] opened")
    else:
        console.print(f"account [bold]{account}[/bold] exists")
    return account


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "-"


async def balances(operator: Client, *accounts: str) -> list[Decimal]:
    return [(await operator.balance(account)).balance for account in accounts]


@dataclass(frozen=True)
class DemoJob:
    """The job the demo ran: whose it is, and where the Web UI shows it."""

    uid: str
    user: str
    web_ui_url: str


async def run_job(settings: Settings) -> DemoJob:
    """The user's part, through the API: the user's client, and the operator's for deposits."""
    user = settings.user or DEMO_USER
    # The local stack's bootstrap keeps the operator's key in the state dir; it signs deposits.
    operator_key = load_operator(
        settings.operator_user, config_dir=settings.config_dir, state_dir=settings.state_dir
    )
    async with (
        Client(settings.model_copy(update={"user": user})) as sdk,
        Client(settings, operator_key) as operator,
    ):
        await demo_user(sdk, user)
        account = await demo_account(sdk, user)
        await operator.deposit(account, DEPOSIT, reference="demo credit")
        provider = await sdk.payee()
        before = await balances(operator, account, provider)
        console.print(
            f"deposited {DEPOSIT}; balances: {account} {before[0]}, {provider} {before[1]}"
        )

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
        console.print(
            f"sha256 of the input, computed by the job: {checksum} [green](matches)[/green]"
        )

        after = await balances(operator, account, provider)
    costs = final.costs
    console.rule("money")
    console.print(f"held {costs.held}, charged {costs.charged}, refunded {costs.refunded}")
    console.print(f"{account}: {before[0]} -> {after[0]}")
    console.print(f"{provider}: {before[1]} -> {after[1]}")
    namespace = settings.temporal_connect_config()["namespace"]
    web_ui_url = f"{settings.web_ui_url}/namespaces/{namespace}/workflows/{job.uid}"
    return DemoJob(uid=job.uid, user=user, web_ui_url=web_ui_url)


def _here(path: Path) -> str:
    """``path`` as typed from the current directory: relative when it is below it."""
    try:
        relative = path.relative_to(Path.cwd())
    except ValueError:
        return str(path)
    return str(relative) if len(relative.parts) > 1 else f"./{relative}"


def cli_command() -> str:
    """The ``jobsheet`` command of this interpreter's environment, as typed from here."""
    python = Path(sys.executable)
    script = python.parent / "jobsheet"
    if script.exists():
        return shlex.quote(_here(script))
    return f"{shlex.quote(_here(python))} -m jobsheet.cli"


def next_commands(job: DemoJob, *, acting_user: str | None) -> list[str]:
    """Three commands to try next, runnable as printed from the directory the demo ran in:
    the job's sheet, the user's jobs, and the job in the Web UI."""
    cli = cli_command()
    as_user = "" if acting_user == job.user else f"JOBSHEET_USER={job.user} "
    python = shlex.quote(_here(Path(sys.executable)))
    return [
        f"{as_user}{cli} show {job.uid}",
        f"{as_user}{cli} list",
        f"{python} -m webbrowser {shlex.quote(job.web_ui_url)}",
    ]


def main() -> int:
    settings = load_settings()
    began = time.monotonic()
    console.rule("jobsheet demo")
    console.print(f"state directory: {settings.state_dir}")
    Stack(settings).up(on_progress=console.print)
    console.print(f"stack ready in {time.monotonic() - began:.1f}s")
    job = asyncio.run(run_job(local_settings(settings)))
    console.rule(f"done in {time.monotonic() - began:.1f}s")
    console.print("try next: the job's sheet, your jobs, and the job in the Temporal Web UI")
    for command in next_commands(job, acting_user=settings.user):
        console.print(f"  {command}", soft_wrap=True, highlight=False, markup=False)
    console.print(
        f"stop the stack with `{cli_command()} stack down` (data is kept)",
        soft_wrap=True,
        highlight=False,
        markup=False,
    )
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
