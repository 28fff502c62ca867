"""Settings come from JOBSHEET_* variables at start-up and never show secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobsheet.core.settings import Settings


def test_environment_prefix_and_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TEMPORAL_ADDRESS", raising=False)
    monkeypatch.setenv("JOBSHEET_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("JOBSHEET_TEMPORAL_PORT", "17233")
    monkeypatch.setenv("JOBSHEET_BUCKET", "mine")
    settings = Settings()
    assert settings.state_dir == tmp_path
    assert settings.bucket == "mine"
    assert settings.temporal_connect_config()["target_host"] == "127.0.0.1:17233"
    assert settings.temporal_connect_config()["namespace"] == "default"


def test_temporal_envconfig_conventions_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "temporal.example.org:7233")
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "prod")
    config = Settings().temporal_connect_config()
    assert config["target_host"] == "temporal.example.org:7233"
    assert config["namespace"] == "prod"
    monkeypatch.setenv("JOBSHEET_TEMPORAL_ADDRESS", "override:7233")
    assert Settings().temporal_connect_config()["target_host"] == "override:7233"


def test_secrets_are_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBSHEET_S3_ACCESS_KEY", "AKIAEXAMPLE")
    monkeypatch.setenv("JOBSHEET_S3_SECRET_KEY", "super-secret-value")
    settings = Settings()
    assert "super-secret-value" not in repr(settings)
    assert "super-secret-value" not in str(settings.model_dump())
    assert settings.s3_credentials() == ("AKIAEXAMPLE", "super-secret-value")


def test_credentials_from_the_stack_state_file(tmp_path: Path) -> None:
    (tmp_path / "s3-credentials.json").write_text(
        json.dumps({"access_key": "a", "secret_key": "b"})
    )
    assert Settings(state_dir=tmp_path).s3_credentials() == ("a", "b")


def test_missing_credentials_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="jobsheet stack up"):
        Settings(state_dir=tmp_path).s3_credentials()
