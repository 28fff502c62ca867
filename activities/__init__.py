"""Temporal activities: every side effect of jobsheet, each idempotent on retry."""
