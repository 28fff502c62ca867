"""What a human sees of a job in the Temporal Web UI: a static summary and live markdown details."""

from __future__ import annotations

from jobsheet.jobs.models import JobRequest, JobSheet


def static_summary(uid: str, request: JobRequest) -> str:
    return f"job {uid}: {request.calculation} for {request.user} on account {request.account}"


def static_details(request: JobRequest) -> str:
    params = ", ".join(f"`{k}={v}`" for k, v in sorted(request.parameters.items())) or "none"
    return (
        f"**calculation** {request.calculation} on service `{request.service}`  \n"
        f"**parameters** {params}  \n"
        f"**input** {request.input_size} bytes, sha256 `{request.input_sha256[:16]}…`"
    )


def current_details(sheet: JobSheet) -> str:
    """Markdown for the Web UI's current details: state, deadline, costs, progress."""
    lines = [f"### {sheet.state.value}"]
    if sheet.expires_at is not None:
        lines.append(f"**run by** {sheet.expires_at.isoformat()}")
    costs = sheet.costs
    lines.append(
        f"**costs** quoted {costs.quoted} · held {costs.held} · charged {costs.charged} · "
        f"refunded {costs.refunded}"
    )
    if sheet.progress is not None:
        fraction = (
            f"{sheet.progress.fraction:.0%}" if sheet.progress.fraction is not None else "n/a"
        )
        lines.append(
            f"**progress** {fraction} · {sheet.progress.elapsed_seconds:.0f}s wall · "
            f"{sheet.progress.output_bytes} bytes written"
        )
    if sheet.outputs:
        lines.append(f"**outputs** {len(sheet.outputs)} objects")
    if sheet.error:
        lines.append(f"**error** {sheet.error}")
    return "  \n".join(lines)
