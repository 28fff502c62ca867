"""One structured line per event, and a user's refusal as one INFO line, not a traceback.

``configure_logging`` sets up a worker's or the API's root logger: JSON objects, one per line
(``JOBSHEET_LOG_FORMAT=json``, the default, for a log collector), or plain text. A traceback
stays inside its line, as the ``exc`` field.

Refusing a user (insufficient funds, a wrong state, a bad parameter) is the service working.
Refusals cross Temporal as ``BENIGN`` errors (jobsheet/contracts/refusals.py), which the SDK
logs at DEBUG only; :class:`RefusalLog`, a worker interceptor, writes the one INFO line that
names the workflow (the job) and the reason instead.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from jobsheet.core.settings import Settings
from jobsheet.telemetry.redaction import RedactSecrets

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
JOB_WORKFLOW_TYPE = "JobSheetWorkflow"

# Attributes every LogRecord has; anything else on a record came as ``extra=`` and is a field.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

log = logging.getLogger("jobsheet.refusals")


class JsonLines(logging.Formatter):
    """A record as one JSON object on one line: time, level, logger, message, the record's
    extra fields, the current trace (when a span is active) and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update((key, value) for key, value in vars(record).items() if key not in _STANDARD)
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            line["trace_id"] = format(span.trace_id, "032x")
            line["span_id"] = format(span.span_id, "016x")
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(settings: Settings) -> None:
    """Set up the root logger for a worker or the API (INFO, one line per event)."""
    handler = logging.StreamHandler()
    handler.addFilter(RedactSecrets())  # no PAR token or presigned signature in any line
    if settings.log_format == "json":
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)


class RefusalLog(Interceptor):
    """Writes one INFO line for each refusal an activity gives (see the module docstring)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _RefusalLogInbound(next)


class _RefusalLogInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        except ApplicationError as error:
            if error.category == ApplicationErrorCategory.BENIGN:
                _log_refusal(error)
            raise


def _log_refusal(error: ApplicationError) -> None:
    info = activity.info()
    fields: dict[str, str] = {
        "workflow_id": info.workflow_id or "",
        "activity": info.activity_type,
        "reason": error.type or "Refused",
        "detail": error.message,
    }
    if info.workflow_type == JOB_WORKFLOW_TYPE and info.workflow_id:
        fields["job"] = info.workflow_id
    log.info(
        "refused %s in %s for %s: %s",
        fields["reason"],
        info.activity_type,
        info.workflow_id,
        error.message,
        extra=fields,
    )
