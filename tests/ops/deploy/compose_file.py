"""docker-compose.yml read as compose reads it: anchors merged, ``${VAR:-default}`` interpolated,
and each service's secrets and mounts resolved to where they appear inside its container."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker-compose.yml"
JOBSHEET_IMAGE = "jobsheet:0.1.0"
METRICS_PORT = 9464

_VARIABLE = re.compile(r"\$\{(?P<name>[A-Z_][A-Z0-9_]*)(?::?(?P<op>[-?])(?P<arg>[^}]*))?\}")


def load() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def interpolate(value: str, dotenv: dict[str, str]) -> str:
    """Replace ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?error}`` as compose does, from
    ``dotenv`` (what an operator's .env would hold)."""

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if dotenv.get(name):
            return dotenv[name]
        if op == "?":
            raise KeyError(f"compose refuses to start without {name}: {arg}")
        return arg or ""

    return _VARIABLE.sub(replace, value.replace("$$", "\0")).replace("\0", "$")


def python_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The long-running services that run the jobsheet image (the API and every worker)."""
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("image") == JOBSHEET_IMAGE and service.get("restart") != "no"
    }


def secret_targets(service: dict[str, Any]) -> dict[str, str]:
    """Secret name -> the path of its file inside the service's container."""
    targets: dict[str, str] = {}
    for entry in service.get("secrets", []):
        if isinstance(entry, str):
            targets[entry] = f"/run/secrets/{entry}"
        else:
            target = entry.get("target", entry["source"])
            targets[entry["source"]] = (
                target if target.startswith("/") else f"/run/secrets/{target}"
            )
    return targets


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of each bind mount (``./x:/y[:ro]``)."""
    mounts: dict[str, Path] = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = (ROOT / source).resolve()
    return mounts


def local_environment(
    service: dict[str, Any],
    *,
    root: Path,
    secrets: dict[str, str],
    addresses: dict[str, str],
    settings: dict[str, str],
    dotenv: dict[str, str],
) -> tuple[dict[str, str], set[str]]:
    """The environment compose gives ``service``, for a process of this machine.

    Secrets are written where the container would see them, under ``root`` (each container
    path becomes ``root/<path>``); every value is interpolated from ``dotenv``; then only what
    names a place is replaced: host:port pairs (``addresses``, e.g. ``temporal:7233``), the
    values of the ``settings`` named (ports, and the namespace the tests isolate themselves
    in), and container paths of secrets and bind mounts. Returns the environment and the keys
    whose value was replaced.
    """
    env = {key: interpolate(str(value), dotenv) for key, value in service["environment"].items()}
    paths: dict[str, Path] = dict(bind_mounts(service))
    for secret, target in secret_targets(service).items():
        host = root / target.lstrip("/")
        host.parent.mkdir(parents=True, exist_ok=True)
        host.write_text(secrets[secret])
        paths[str(Path(target).parent)] = host.parent
        paths[target] = host
    changed: set[str] = set()
    for key, value in env.items():
        new = settings.get(key, value)
        for old, replacement in addresses.items():
            new = new.replace(old, replacement)
        for container in sorted(paths, key=len, reverse=True):
            if new == container or new.startswith(container + "/"):
                new = str(paths[container]) + new[len(container) :]
                break
        if new != value:
            env[key] = new
            changed.add(key)
    return env, changed
