"""Calculations are isolated from their worker, as root and as an ordinary user.

- A root worker runs calculations as an unprivileged user: the calculation reads its input,
  writes its outputs and home, and cannot read the worker's environment (which holds the S3
  keys) or a credential file; the worker reads the outputs afterwards, and nothing the
  calculation left (a symlink, an unreadable file) reaches past the run directory.
- A worker that is not root runs calculations as itself: ``checksum`` still runs (RLIMIT_NPROC,
  which counts every task of the user, leaves room for the worker's own threads) and the
  calculation still cannot read the worker's environment (the worker is non-dumpable).
- cgroup v2 limits are used where the machine delegates a cgroup, and skipped where not.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import json
import os
import pwd
import secrets
import shutil
import tempfile
import threading
import traceback
from pathlib import Path

import pytest
from minio import Minio
from temporalio.client import Client
from temporalio.worker import Worker

from jobsheet.compute.cgroups import CgroupParent, detect_cgroups
from jobsheet.compute.config import load_compute_config
from jobsheet.compute.models import RunStatus
from jobsheet.compute.runner import Limits, run_isolated, start_isolated
from jobsheet.compute.sandbox import (
    CalculationUser,
    Sandbox,
    SandboxError,
    calculations_for,
    prepare_sandbox,
    python_for,
    resolve_user,
)
from jobsheet.core.processes import PR_SET_DUMPABLE
from jobsheet.core.settings import Settings
from tests.compute.conftest import ComputeHarness, output_prefix
from tests.compute.harness import CallComputeWorkflow
from tests.compute.test_worker_crash import WorkerProcesses
from tests.compute.test_worker_crash import worker_processes as worker_processes

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = load_compute_config(ROOT / "calculations" / "calculations.toml")
TESTS = load_compute_config(Path(__file__).with_name("test_calculations.toml"))
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


def limits(*, processes: int = 16) -> Limits:
    return Limits(
        wall_seconds=30,
        cpu_seconds=30,
        memory_bytes=256 << 20,
        file_bytes=1 << 20,
        processes=processes,
        output_bytes=1 << 20,
    )


async def run_in_sandbox(
    sandbox: Sandbox, argv_for: object, data: bytes, *, processes: int = 16
) -> tuple[int | None, dict[str, bytes], bytes]:
    """Run a calculation the way the run activity does; (exit code, outputs, stdout)."""
    with sandbox.run_directory() as root:
        input_dir, output_dir, log_dir = root / "input", root / "out", root / "logs"
        for directory in (input_dir, output_dir, log_dir):
            directory.mkdir(mode=0o700)
        input_path = input_dir / "input"
        input_path.write_bytes(data)
        assert callable(argv_for)
        outcome = await run_isolated(
            argv_for(input_path, output_dir),
            run_dir=root,
            output_dir=output_dir,
            stdout_path=log_dir / "stdout.txt",
            stderr_path=log_dir / "stderr.txt",
            limits=limits(processes=processes),
            heartbeat_seconds=1,
            on_progress=lambda _progress: None,
            sandbox=sandbox,
        )
        # Afterwards everything in the run directory is the worker's again.
        for path in [root, *root.rglob("*")]:
            assert path.lstat().st_uid == os.geteuid(), path
        outputs = {
            str(path.relative_to(output_dir)): path.read_bytes()
            for path in output_dir.rglob("*")
            if path.is_file() and not path.is_symlink()
        }
        stdout = (log_dir / "stdout.txt").read_bytes() + (log_dir / "stderr.txt").read_bytes()
        return outcome.exit_code, outputs, stdout


def checksum_argv(sandbox: Sandbox) -> object:
    calculation = SHIPPED.calculation("checksum", service="standard")
    return lambda input_path, output_dir: calculation.render_argv(
        {}, input_path=input_path, output_dir=output_dir, base_dir=SHIPPED.base_dir
    )


@as_root
async def test_a_root_worker_runs_calculations_as_an_unprivileged_user(tmp_path: Path) -> None:
    user = resolve_user("")
    assert user.uid != 0 and user.name in ("jobsheet-calc", "nobody")
    sandbox = Sandbox(user=CalculationUser(user.name, user.uid, user.gid, python_for(user)))
    secret = tmp_path / "credential"
    secret.write_text("the worker's secret")
    secret.chmod(0o600)
    script = f"""
        id -u > "$2/uid"
        wc -c < "$1" > "$2/size"
        echo note > "$HOME/home-file" && cp "$HOME/home-file" "$2/home-copy"
        cat /proc/$PPID/environ > "$2/environ" 2>/dev/null || echo "no environ" >&2
        cat {secret} > "$2/secret" 2>/dev/null || echo "no secret" >&2
        mv "$(dirname "$2")/logs" "$(dirname "$2")/mine" 2>/dev/null && echo "renamed logs"
        ln -s {secret} "$2/link-to-secret"
        echo hidden > "$2/hidden" && chmod 000 "$2/hidden"
        mkdir "$2/closed" && echo inside > "$2/closed/file" && chmod 000 "$2/closed"
        su root -c true 2>/dev/null && echo "became root"
        exit 0
    """

    def argv(input_path: Path, output_dir: Path) -> list[str]:
        return ["sh", "-c", script, "hostile", str(input_path), str(output_dir)]

    code, outputs, said = await run_in_sandbox(sandbox, argv, b"twelve bytes")
    assert code == 0, said
    assert outputs["uid"] == f"{user.uid}\n".encode()
    assert outputs["size"] == b"12\n"
    assert outputs["home-copy"] == b"note\n"
    assert outputs["environ"] == b"" and outputs["secret"] == b""
    assert b"no environ" in said and b"no secret" in said
    assert b"renamed logs" not in said and b"became root" not in said
    # The worker reads what the calculation left, however it set the modes...
    assert outputs["hidden"] == b"hidden\n" and outputs["closed/file"] == b"inside\n"
    # ...and a symlink is never followed to what it names.
    assert "link-to-secret" not in outputs


def chooses_the_readable_directory(user: CalculationUser, private: Path, run_dir: Path) -> None:
    """The operator's directory where the user may read it, else a copy in the run dir."""
    shared = Path(tempfile.mkdtemp(prefix="jobsheet-test-calculations-"))
    try:
        shared.chmod(0o755)
        run_dir.mkdir()
        assert calculations_for(user, shared, run_dir) == shared
        copied = calculations_for(user, private, run_dir)
        assert copied == run_dir / "calculations" and (copied / "answer.sh").exists()
    finally:
        shutil.rmtree(shared)


@as_root
async def test_calculations_in_a_private_directory_still_run(tmp_path: Path) -> None:
    """A checkout the calculation's user cannot enter (a clone under a 0700 directory, as CI's
    may be) is copied into the run directory, which the user is handed."""
    user = resolve_user("")
    sandbox = Sandbox(user=CalculationUser(user.name, user.uid, user.gid, python_for(user)))
    private = tmp_path / "calculations"  # pytest's base directory is 0700
    private.mkdir()
    (private / "answer.sh").write_text('echo 42 > "$1/answer"\n')
    chooses_the_readable_directory(sandbox.user, private, tmp_path / "run")

    def argv(input_path: Path, output_dir: Path) -> list[str]:
        scripts = calculations_for(sandbox.user, private, input_path.parent.parent)
        return ["sh", str(scripts / "answer.sh"), str(output_dir)]

    code, outputs, said = await run_in_sandbox(sandbox, argv, b"input")
    assert code == 0, said
    assert outputs["answer"] == b"42\n"


@as_root
def test_checksum_runs_under_a_worker_that_is_not_root() -> None:
    """A forked worker drops to an unprivileged user, holds many threads (as a real worker
    does) and runs checksum, whose shell forks: RLIMIT_NPROC counts every thread of the user."""
    nobody = pwd.getpwnam("nobody")
    base = Path(tempfile.mkdtemp(prefix="jobsheet-test-nonroot-"))
    base.chmod(0o777)
    data = b"0123456789\n" * 1000
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker that is not root
        code = 1
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            # Dumpable again, like a worker started as this user (the switch cleared it).
            ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
            stop = threading.Event()
            for _ in range(48):  # more threads than checksum may have processes
                threading.Thread(target=stop.wait, daemon=True).start()
            sandbox = prepare_sandbox("", run_base=base)
            assert sandbox.user.uid == nobody.pw_uid and sandbox.user.is_worker

            def snoop(_input: Path, output_dir: Path) -> list[str]:
                return ["sh", "-c", 'cat /proc/$PPID/environ > "$1/environ"', "s", str(output_dir)]

            try:
                resolve_user("root")
            except SandboxError:
                pass
            else:
                raise AssertionError("a worker that is not root may not name another user")
            result = {
                "checksum": asyncio.run(run_in_sandbox(sandbox, checksum_argv(sandbox), data)),
                "snoop": asyncio.run(run_in_sandbox(sandbox, snoop, b"")),
            }
            stop.set()
            os.write(write_fd, json.dumps(result, default=lambda b: b.decode()).encode())
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    shutil.rmtree(base, ignore_errors=True)
    assert os.waitstatus_to_exitcode(status) == 0 and report, report
    result = json.loads(report)
    code, outputs, said = result["checksum"]
    assert code == 0, said
    assert outputs["sha256.txt"].strip() == hashlib.sha256(data).hexdigest()
    assert outputs["wc.txt"].split() == ["1000", "1000", "11000"]
    code, outputs, said = result["snoop"]
    assert code != 0 and "Permission denied" in said
    assert outputs.get("environ", "") == ""


async def test_a_calculation_cannot_read_its_workers_environment_or_credentials(
    client: Client,
    compute_settings: Settings,
    worker_processes: WorkerProcesses,
    task_queue: str,
    s3: Minio,
    tmp_path: Path,
) -> None:
    """A real worker process, with S3 keys in its environment (as a ``--role all`` worker
    has) and a credential file only its user may read."""
    access, secret = f"AK{secrets.token_hex(8)}", secrets.token_urlsafe(24)
    credential = tmp_path / "s3-credentials.json"
    credential.write_text(json.dumps({"access_key": access, "secret_key": secret}))
    credential.chmod(0o600)
    worker_processes.env.update(
        {"JOBSHEET_S3_ACCESS_KEY": access, "JOBSHEET_S3_SECRET_KEY": secret}
    )
    await worker_processes.start()
    async with Worker(client, task_queue=task_queue, workflows=[CallComputeWorkflow]):
        harness = ComputeHarness(
            client=client, settings=compute_settings, s3=s3, task_queue=task_queue
        )
        contract = await harness.contract("snoop", {"secret_file": str(credential)}, service="test")
        result = await harness.run(harness.run_request(contract))
    assert result.status == RunStatus.SUCCEEDED, result.stderr_tail
    stored = harness.objects(output_prefix(contract))
    stdout = stored[output_prefix(contract) + "stdout.txt"].decode()
    assert "refused /proc/" in stdout and f"refused {credential}" in stdout, stdout
    everything = b"".join(stored.values())
    assert secret.encode() not in everything and access.encode() not in everything
    if os.geteuid() == 0:
        assert stored[output_prefix(contract) + "files/uid"].strip() != b"0"


def test_cgroups_are_used_where_delegated_and_skipped_elsewhere(tmp_path: Path) -> None:
    # This machine: whatever it offers, detection answers without failing.
    found = detect_cgroups()
    assert found is None or isinstance(found, CgroupParent)
    # A delegated cgroup v2 holding this process alone (a fake cgroupfs in files).
    mount = tmp_path / "cgroup"
    here = mount / "system.slice" / "worker.service"
    here.mkdir(parents=True)
    (here / "cgroup.controllers").write_text("cpu io memory pids\n")
    (here / "cgroup.subtree_control").write_text("\n")
    (here / "cgroup.procs").write_text(f"{os.getpid()}\n")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 0:21 / /proc rw - proc proc rw\n"
        f"30 25 0:26 / {mount} rw,nosuid - cgroup2 cgroup2 rw\n"
    )
    own = tmp_path / "own"
    own.write_text("0::/system.slice/worker.service\n")
    parent = detect_cgroups(mountinfo=mountinfo, own=own)
    assert parent == CgroupParent(here)
    # The worker moved itself into a leaf and enabled the controllers for the runs beside it.
    assert (here / "jobsheet-worker" / "cgroup.procs").read_text() == str(os.getpid())
    assert (here / "cgroup.subtree_control").read_text() == "+pids +memory"
    run = parent.create("jobsheet-run-1-2-" + "0" * 16, processes=16, memory_bytes=1 << 28)
    assert run is not None
    assert (run.path / "pids.max").read_text() == "16"
    assert (run.path / "memory.max").read_text() == str(1 << 28)
    # A cgroup shared with other processes is not taken over.
    (here / "cgroup.subtree_control").write_text("\n")
    (here / "cgroup.procs").write_text(f"{os.getpid()}\n1\n")
    assert detect_cgroups(mountinfo=mountinfo, own=own) is None
    # cgroup v1 only: nothing.
    mountinfo.write_text("30 25 0:26 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n")
    assert detect_cgroups(mountinfo=mountinfo, own=own) is None


def test_the_calculation_user_comes_from_the_setting() -> None:
    if os.geteuid() == 0:
        assert resolve_user("root").uid == 0
        assert resolve_user("nobody").name == "nobody"
        assert resolve_user(str(pwd.getpwnam("nobody").pw_uid)).name == "nobody"
    else:
        assert resolve_user("").is_worker
    with pytest.raises(SandboxError, match="not a user here"):
        resolve_user("no-such-user-" + secrets.token_hex(4))


def test_the_program_is_set_up_after_exec_with_no_python_between_fork_and_exec(
    tmp_path: Path,
) -> None:
    """The cgroup join, the rlimits, no new privileges and the death with the worker are done by
    ``sh``, ``prlimit`` and ``setpriv`` after exec, not by a ``preexec_fn``: Python in the child
    of a fork can deadlock in a worker with threads (a run in CI hung there)."""
    cgroup = tmp_path / "run-cgroup"
    cgroup.mkdir()
    (cgroup / "cgroup.procs").write_text("")  # a fake cgroupfs: the join is a write of "0"
    home = tmp_path / "home"
    home.mkdir()
    report = (
        "grep -E '^(NoNewPrivs|Uid)' /proc/self/status; ulimit -t; ulimit -f; umask; "
        "tr '\\0' ' ' < /proc/$$/cmdline; echo; echo $$ $(cut -d' ' -f5,6 /proc/$$/stat)"
    )
    proc = start_isolated(
        ["sh", "-c", report],
        home=home,
        stdout_path=tmp_path / "out",
        stderr_path=tmp_path / "err",
        limits=limits(processes=64),
        user=CalculationUser.worker(),
        cgroup=cgroup,
    )
    assert proc.wait(timeout=30) == 0, (tmp_path / "err").read_text()
    said = (tmp_path / "out").read_text().split("\n")
    assert (cgroup / "cgroup.procs").read_text().strip() == "0"
    assert "NoNewPrivs:\t1" in said
    assert said[2:5] == ["30", str((1 << 20) // 512), "0077"]  # sh counts 512-byte blocks
    assert said[5].startswith("sh -c")  # the program itself, not a launcher, holds the pid
    assert said[6].split() == [str(proc.pid)] * 3  # the leader of its own group and session
