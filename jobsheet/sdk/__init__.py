"""The jobsheet Python SDK: submit paid jobs, move their data through PARs and follow them.

It talks to jobsheet only through the public HTTP API (``JOBSHEET_API_URL``), signing each
request with the user's key; it needs no Temporal address and no storage credential.

    client = await Client.connect(user="alice")
    job = await client.submit("checksum", {}, "data.bin", account="acct-1", max_spend="5.00")
    await job.upload()
    await job.run()
    async for event in job.watch():
        print(event.state)
    paths = await job.download("out/")

:mod:`jobsheet.sdk.sync` has the same API for scripts that do not use asyncio.
"""

from jobsheet.contracts.api import JobSummary
from jobsheet.sdk.client import Client
from jobsheet.sdk.errors import (
    BadInput,
    IntegrityError,
    JobsheetError,
    NotFound,
    Refused,
    RunRefused,
    Unauthorised,
    Unavailable,
)
from jobsheet.sdk.events import JobEvent
from jobsheet.sdk.job import Job
from jobsheet.sdk.run_par import RunTriggered
from jobsheet.sdk.session import RetryPolicy
from jobsheet.sdk.transfer import TransferProgress

__all__ = [
    "BadInput",
    "Client",
    "IntegrityError",
    "Job",
    "JobEvent",
    "JobSummary",
    "JobsheetError",
    "NotFound",
    "Refused",
    "RetryPolicy",
    "RunRefused",
    "RunTriggered",
    "TransferProgress",
    "Unauthorised",
    "Unavailable",
]
