"""docker-compose.yml's monitoring services: pinned images, and they mount the files of deploy/."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]
PINNED = re.compile(r"^[\w./-]+:v?\d+\.\d+\.\d+$")  # an exact release, never "latest"


def services() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"])


@pytest.mark.parametrize("name", ["prometheus", "grafana"])
def test_a_monitoring_service_runs_a_pinned_image_with_the_files_of_deploy(name: str) -> None:
    service = services()[name]
    assert PINNED.match(service["image"]), service["image"]
    assert {"demo", "monitoring"} <= set(service["profiles"])
    for volume in service["volumes"]:
        source, _, mode = volume.split(":")
        assert source.startswith("./deploy/"), volume
        assert (ROOT / source).is_dir(), volume
        assert mode == "ro", volume


def test_grafana_is_provisioned_with_the_prometheus_of_the_compose_file_and_the_dashboard() -> None:
    grafana, prometheus = services()["grafana"], services()["prometheus"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert datasource["url"] == "http://prometheus:{}".format(prometheus["ports"][0].rsplit(":", 1)[1])
    provider = yaml.safe_load((provisioning / "dashboards" / "persona-stream.yml").read_text())["providers"][0]
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / "deploy" / "grafana" / "dashboards" / Path(home).name).is_file()
    assert Path(home).parent == Path(provider["options"]["path"])
