"""The README works as written: the blocks a newcomer runs, run in order against a local stack.

The sections below are followed as a reader would, in one shell session in a fresh directory:
shell blocks run in bash (``set -e``: every command must succeed), with what they export kept
for the next block; Python blocks are saved to a file and run with the project's interpreter.
``jobsheet stack up`` in the tour starts a local stack of the test's own. Only what must differ
is substituted, through the environment the README's commands honour: ``HOME`` (so the state
and config directories are the test's), the stack's ports (``JOBSHEET_*_PORT``) and
``TEMPORAL_ADDRESS`` for the ``temporal`` CLI. What a reader copies from one command's output
into a variable (the README says which) is read from that output.

Not run here: the deployment sections (docker compose, secrets, upgrades; tests/ops/deploy covers
them), the Workers section (long-running workers, which the stack itself starts), the signing
recipe (tests/api/test_sign_by_hand.py runs it) and the blocks that are not commands (the state
diagram, the layout tree).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from jobsheet.core import processes
from jobsheet.core.settings import Settings
from jobsheet.ops.stack import Stack
from tests.readme_blocks import Block, readme_blocks

RUN_SECTIONS = (
    "Two commands",
    "A five-minute tour",
    "Reading a job in the Web UI",
    "The local stack",
)

# Blocks of those sections the test does not run, by their first line, each with the reason.
SKIPPED = {
    "make demo": "installs into .venv and uses the default ports; tests/ops/test_demo.py runs the "
    "demo, and `make test` is the suite this test belongs to",
}

# What the reader copies from a block's output into shell variables before the next block.
COPIED = {
    "export JOBSHEET_USER=alice": {
        "JOB": re.compile(r"\bjob-[0-9a-f]{32}\b"),
        "RUN_URL": re.compile(r"http://\S+/par/run/job-[0-9a-f]{32}/[\w-]+"),
    },
}

# Stable substrings a block's output must hold (from the API or Temporal, not CLI wording).
EXPECTED = {
    'jobsheet run "$JOB"': [" 409 "],  # the second call of the run PAR
    "import asyncio": ["times,2000"],  # text-stats counted the words of the text
    "temporal workflow list": ["JobSheetWorkflow"],
}

BLOCK_TIMEOUT = 90

T = TypeVar("T")


def tour_blocks() -> list[Block]:
    return [b for b in readme_blocks() if any(b.under(section) for section in RUN_SECTIONS)]


@dataclass
class Reader:
    """A newcomer's terminal: a directory, an environment, and the blocks run so far."""

    workdir: Path
    env: dict[str, str]

    def run(self, block: Block) -> str:
        """Run ``block`` as the README says, copy what the reader copies from its output, and
        return the output; fail naming the block when it fails."""
        if block.language == "sh":
            result = self._shell(block)
        else:
            script = self.workdir / f"readme_{block.line}.py"
            script.write_text(block.text)
            result = self._call([sys.executable, str(script)], block)
        output = result.stdout + result.stderr
        if result.returncode != 0:
            pytest.fail(f"{block.name} exited {result.returncode}:\n{output[-6000:]}")
        for expected in for_block(EXPECTED, block) or []:
            assert expected in output, f"{block.name}: no {expected!r} in its output:\n{output}"
        for name, pattern in (for_block(COPIED, block) or {}).items():
            found = pattern.search(result.stdout)
            assert found, f"{block.name}: no {name} to copy from its output:\n{output}"
            self.env[name] = found.group(0)
        return output

    def _shell(self, block: Block) -> subprocess.CompletedProcess[str]:
        script, env_out = self.workdir / f"readme_{block.line}.sh", self.workdir / ".env.out"
        script.write_text(block.text)
        # One shell session across blocks: what a block exports is there for the next one.
        session = 'set -eo pipefail; . "$1"; env -0 > "$2"'
        result = self._call(["bash", "-c", session, "bash", str(script), str(env_out)], block)
        if result.returncode == 0:
            pairs = (item.split("=", 1) for item in env_out.read_text().split("\0") if "=" in item)
            self.env = {name: value for name, value in pairs if name not in ("_", "SHLVL", "PWD")}
        return result

    def _call(self, argv: list[str], block: Block) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                argv,
                cwd=self.workdir,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=BLOCK_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            output = _text(exc.stdout) + _text(exc.stderr)
            pytest.fail(f"{block.name} did not finish in {BLOCK_TIMEOUT}s:\n{output[-6000:]}")


def _text(output: str | bytes | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def for_block(table: dict[str, T], block: Block) -> T | None:
    """The entry of ``table`` whose key the block's first line starts with."""
    return next((v for k, v in table.items() if block.first_line.startswith(k)), None)


@pytest.fixture
def reader(tmp_path: Path) -> Iterator[Reader]:
    """A fresh home and working directory, free ports; the stack the tour starts is stopped
    (by its pid files) at the end, whatever happened."""
    home, workdir = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    workdir.mkdir()
    ports = {name: processes.free_port() for name in ("temporal", "temporal_ui", "s3", "api")}
    inherited = ("JOBSHEET_", "TEMPORAL_", "XDG_", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith(inherited)}
    env.update(
        {
            "HOME": str(home),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "TEMPORAL_ADDRESS": f"127.0.0.1:{ports['temporal']}",
            **{f"JOBSHEET_{name.upper()}_PORT": str(port) for name, port in ports.items()},
        }
    )
    settings = Settings(
        state_dir=home / ".local" / "state" / "jobsheet",
        temporal_port=ports["temporal"],
        temporal_ui_port=ports["temporal_ui"],
        s3_port=ports["s3"],
        api_port=ports["api"],
    )
    try:
        yield Reader(workdir, env)
    finally:
        Stack(settings).down()


def test_the_tables_name_blocks_of_the_readme() -> None:
    blocks = tour_blocks()
    headings = {section for block in readme_blocks() for section in block.sections}
    assert set(RUN_SECTIONS) <= headings, set(RUN_SECTIONS) - headings
    for first_line in [*SKIPPED, *COPIED, *EXPECTED]:
        assert any(b.first_line.startswith(first_line) for b in blocks), first_line


@pytest.mark.timeout(240)
def test_the_readme_runs_as_written(reader: Reader) -> None:
    began = time.monotonic()
    ran = []
    for block in tour_blocks():
        if for_block(SKIPPED, block) is not None:
            continue
        assert block.language in ("sh", "python"), f"{block.name}: no way to run {block.language!r}"
        reader.run(block)
        ran.append(f"{block.name} {time.monotonic() - began:.1f}s")
    print("\n".join(ran))
    assert len(ran) >= 7, ran
