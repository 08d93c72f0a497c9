from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.settings import Settings
from persona_stream.localcluster import LocalKafkaCluster
from persona_stream.localkafka import LocalKafkaError


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
    from persona_stream.settings_doc import readme_is_current

    assert readme_is_current(Path(__file__).resolve().parents[2] / "README.md"), "run: persona-stream schemas export"


@dataclass(frozen=True)
class ClusterCase:
    env: dict[str, str]
    bootstrap: str
    replication_factor: int


CLUSTER_CASES = [
    ClusterCase({}, "127.0.0.1:19092", 1),
    ClusterCase({"LOCAL_KAFKA_BROKERS": "3"}, "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096", 3),
    ClusterCase({"LOCAL_KAFKA_BROKERS": "5"}, ",".join(f"127.0.0.1:{19092 + 2 * n}" for n in range(5)), 3),
    ClusterCase(
        {"LOCAL_KAFKA_BROKERS": "3", "REPLICATION_FACTOR": "2"}, "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096", 2
    ),
    ClusterCase({"LOCAL_KAFKA_BROKERS": "3", "KAFKA_BOOTSTRAP_SERVERS": "k:9092"}, "k:9092", 1),
    ClusterCase({"LOCAL_KAFKA_BROKERS": "2", "LOCAL_KAFKA_PORT": "30000"}, "127.0.0.1:30000,127.0.0.1:30002", 2),
]


@pytest.mark.parametrize("case", CLUSTER_CASES)
def test_a_local_cluster_is_every_node_and_replicates_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch, case: ClusterCase
) -> None:
    for name, value in case.env.items():
        monkeypatch.setenv(f"PERSONA_STREAM_{name}", value)
    settings = Settings()
    assert (settings.bootstrap_servers(), settings.replication_factor) == (case.bootstrap, case.replication_factor)


def test_cluster_nodes_whose_ports_overlap_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LocalKafkaError) as raised:
        LocalKafkaCluster.in_cache(tmp_path, 3, 30000, 30002)
    assert raised.value.code == "port-clash"
    nodes = LocalKafkaCluster.in_cache(tmp_path, 3, 30000, 30001).nodes
    assert [(n.node_id, n.port, n.controller_port) for n in nodes] == [
        (1, 30000, 30001),
        (2, 30002, 30003),
        (3, 30004, 30005),
    ]
    assert len({n.cluster.cluster_id for n in nodes if n.cluster}) == 1
    assert LocalKafkaCluster.in_cache(tmp_path, 3, 30000, 30001).nodes[0].cluster == nodes[0].cluster  # kept
    (single,) = LocalKafkaCluster.in_cache(tmp_path, 1, 30000, 30001).nodes
    assert (single.home, single.cluster) == (tmp_path / "broker", None)
