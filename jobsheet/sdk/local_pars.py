"""The PAR URLs of a user's own jobs, kept on their machine (mode 0600) between commands.

PAR URLs are secrets the service hands out once, at submission, and never records. Keeping them
in the config directory lets ``jobsheet upload`` and ``jobsheet run`` act on a job by its uid.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel

from jobsheet.identity.keys import default_config_dir


class LocalPars(BaseModel):
    uid: str
    upload_url: str
    run_url: str
    expires_at: datetime
    input_path: str | None = None
    no_input: bool = False
    """The job's calculation reads no input: its upload is an empty object."""


def pars_path(uid: str, config_dir: Path | None) -> Path:
    safe = "".join(c for c in uid if c.isalnum() or c in "-_.")
    return (config_dir or default_config_dir()) / "jobs" / f"{safe}.json"


def save_pars(pars: LocalPars, config_dir: Path | None) -> Path:
    path = pars_path(pars.uid, config_dir)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(pars.model_dump_json(indent=2))
    os.replace(tmp, path)
    return path


def load_pars(uid: str, config_dir: Path | None) -> LocalPars | None:
    try:
        return LocalPars.model_validate(json.loads(pars_path(uid, config_dir).read_text()))
    except (FileNotFoundError, ValueError):
        return None
