"""The job sheet workflow, as a package: ``workflow`` (the definition: its handlers and ``run``),
``submission`` and ``settlement`` (the lifecycle's two halves), ``saga`` (compensation),
``steps`` (every activity call and its options) and ``state`` (what one job's run knows)."""

from workflows.job_sheet.workflow import JobSheetWorkflow

__all__ = ["JobSheetWorkflow"]
