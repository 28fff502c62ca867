"""jobsheet: a durable, pay-per-job compute pipeline on Temporal."""

from typing import TYPE_CHECKING

from jobsheet.version import __version__

if TYPE_CHECKING:
    from jobsheet.sdk import Client, Job

__all__ = ["Client", "Job", "__version__"]


def __getattr__(name: str) -> object:
    """``from jobsheet import Client`` (and ``Job``) without importing the SDK at package import."""
    if name in ("Client", "Job"):
        from jobsheet import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'jobsheet' has no attribute {name!r}")
