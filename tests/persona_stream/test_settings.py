from __future__ import annotations

import pytest
from pydantic import ValidationError

from persona_stream.settings import Settings


def test_unset_bootstrap_servers_means_the_embedded_kafka() -> None:
    settings = Settings()
    assert settings.uses_local_kafka
    assert settings.bootstrap_servers() == f"127.0.0.1:{settings.local_kafka_port}"


def test_values_come_from_prefixed_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSONA_STREAM_KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("PERSONA_STREAM_WEBHOOK_SECRETS", "wbhsec_old, wbhsec_new")
    monkeypatch.setenv("PERSONA_STREAM_TOKEN_SECRET", "s" * 32)
    settings = Settings()
    assert not settings.uses_local_kafka
    assert settings.bootstrap_servers() == "k1:9092,k2:9092"
    assert [s.get_secret_value() for s in settings.webhook_secrets] == ["wbhsec_old", "wbhsec_new"]
    assert "wbhsec" not in repr(settings)
    assert "sss" not in repr(settings)


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.partitions = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "value"),
    [("PARTITIONS", "0"), ("TOPIC_PREFIX", "has space"), ("LOCAL_KAFKA_PORT", "70000")],
)
def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(f"PERSONA_STREAM_{name}", value)
    with pytest.raises(ValidationError):
        Settings()


def test_the_readme_configuration_table_is_current() -> None:
    from pathlib import Path

    from persona_stream.settings_doc import readme_is_current

    assert readme_is_current(Path(__file__).resolve().parents[2] / "README.md"), "run: persona-stream schemas export"
