"""``make demo``: bring the local stack up and run a workflow through it, then say where to look."""

from __future__ import annotations

import asyncio
import os
import sys
import time

from rich.console import Console

from jobsheet.cli.smoke_cmd import run_smoke
from jobsheet.settings import load_settings
from jobsheet.stack import Stack


def main() -> int:
    console = Console()
    settings = load_settings()
    began = time.monotonic()
    console.rule("jobsheet demo")
    console.print(f"state directory: {settings.state_dir}")
    statuses = Stack(settings).up(on_progress=console.print)
    for status in statuses:
        for key, value in status.endpoints.items():
            console.print(f"  {status.name:9} {key:12} {value}")
    outcome = asyncio.run(run_smoke(settings))
    console.print(f"workflow {outcome['workflow_id']} wrote {outcome['object']}")
    console.rule(f"done in {time.monotonic() - began:.1f}s")
    console.print(f"Temporal Web UI: [bold]{settings.web_ui_url}[/bold]")
    console.print(f"this run:        [bold]{outcome['web_ui']}[/bold]")
    console.print("stop the stack with `.venv/bin/jobsheet stack down` (data is kept)")
    return 0


if __name__ == "__main__":
    code = 1
    try:
        code = main()
    except Exception as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
