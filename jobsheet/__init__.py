"""jobsheet: a durable, pay-per-job compute pipeline on Temporal."""

__version__ = "0.1.0"
