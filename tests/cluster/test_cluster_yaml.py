"""Offline checks of the Ray cluster launcher config (cluster.yaml) for GCP.

Validates against the JSON schema shipped inside the installed Ray package and with Ray's own
launcher-side validation (`ray.autoscaler._private.util.prepare_config` + `validate_config`), with
all socket connections blocked to prove nothing talks to GCP. No Ray cluster is started.
"""

from __future__ import annotations

import copy
import json
import re
import socket
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

pytestmark = pytest.mark.unit

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"
RAY_SCHEMA = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"

# Keys that, in a GCP/Ray config, would open or describe network exposure.
_EXPOSURE_KEYS = {"ports", "port", "firewall", "firewalls", "firewallrules", "allowed", "sourceranges"}


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to reach GCP (or anything else) fails the test instead of silently succeeding."""

    def _blocked(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted during offline validation: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", _blocked)
    monkeypatch.setattr(socket.socket, "connect_ex", _blocked)
    monkeypatch.setattr(socket, "getaddrinfo", _blocked)


@pytest.fixture(scope="module")
def raw_text() -> str:
    return CLUSTER_YAML.read_text()


@pytest.fixture(scope="module")
def config(raw_text: str) -> dict[str, Any]:
    loaded = yaml.safe_load(raw_text)
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    assert RAY_SCHEMA.is_file(), f"Ray {ray.__version__} no longer ships {RAY_SCHEMA}"
    loaded = json.loads(RAY_SCHEMA.read_text())
    jsonschema.validators.validator_for(loaded).check_schema(loaded)
    return loaded


def _schema_validate(cfg: dict[str, Any], schema: dict[str, Any]) -> None:
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls(schema).validate(cfg)


def _walk(node: Any, path: str = ""):
    """Yield (path, key, value) for every mapping entry in the config, recursively."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, str(key), value
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _walk(item, f"{path}[{i}]")


def _ports_in(value: Any) -> set[int]:
    return {int(p) for p in re.findall(r"\d+", json.dumps(value))}


# --- schema and Ray validation ---------------------------------------------------------------------


def test_validates_against_ray_shipped_json_schema(config, schema):
    _schema_validate(config, schema)


def test_ray_validate_config_accepts_raw_config(config):
    validate_config(copy.deepcopy(config))


def test_ray_prepare_config_then_validate_config(config, schema):
    # What `ray up` does before it first talks to the cloud provider.
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    _schema_validate(prepared, schema)
    # Our values survive the merge with Ray's GCP defaults.
    assert prepared["head_node_type"] == config["head_node_type"]
    assert set(prepared["available_node_types"]) == set(config["available_node_types"])
    assert prepared["head_start_ray_commands"] == config["head_start_ray_commands"]


# --- structural assertions -------------------------------------------------------------------------


def test_provider_is_gcp_with_location_and_project(config):
    provider = config["provider"]
    assert provider["type"] == "gcp"
    assert provider["region"]
    assert provider["availability_zone"].startswith(provider["region"])
    assert provider["project_id"]
    assert config["cluster_name"] == "quanticity"
    assert config["auth"]["ssh_user"] == "ubuntu"


def test_every_node_type_has_cpu_resources_and_node_config(config):
    node_types = config["available_node_types"]
    assert node_types
    for name, node_type in node_types.items():
        assert isinstance(node_type["resources"].get("CPU"), int), name
        assert node_type["resources"]["CPU"] >= 0, name
        node_config = node_type["node_config"]
        assert node_config["machineType"], name
        assert any(d.get("boot") for d in node_config["disks"]), name


def test_head_node_type_names_an_existing_node_type(config):
    assert config["head_node_type"] in config["available_node_types"]


def test_a_worker_type_autoscales(config):
    workers = {name: nt for name, nt in config["available_node_types"].items() if name != config["head_node_type"]}
    assert any(nt.get("max_workers", 0) > nt.get("min_workers", 0) for nt in workers.values())
    assert config["max_workers"] >= sum(nt.get("min_workers", 0) for nt in workers.values())


def test_trading_workers_are_not_preemptible(config):
    worker = config["available_node_types"]["cpu-worker"]
    assert worker["node_config"]["scheduling"]["preemptible"] is False


def test_repo_is_mounted_and_installed_into_a_venv(config):
    assert "/home/ubuntu/quanticity" in config["file_mounts"]
    setup = "\n".join(config["setup_commands"])
    assert "-m venv" in setup
    assert "cd /home/ubuntu/quanticity" in setup
    assert "pip install -e ." in setup


# --- security --------------------------------------------------------------------------------------


def test_dashboard_is_bound_to_loopback(config):
    head_cmds = " ".join(config["head_start_ray_commands"])
    hosts = re.findall(r"--dashboard-host[= ](\S+)", head_cmds)
    assert hosts == ["127.0.0.1"]
    assert "ray stop" in config["head_start_ray_commands"][0]
    assert "--head" in head_cmds and "--port=6379" in head_cmds
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head_cmds
    # Workers must not start a dashboard of their own on a public interface.
    worker_cmds = " ".join(config["worker_start_ray_commands"])
    assert "--address=$RAY_HEAD_IP:6379" in worker_cmds
    assert "dashboard-host" not in worker_cmds or "--dashboard-host=127.0.0.1" in worker_cmds


def test_nothing_opens_a_port_but_ssh(config, raw_text):
    for path, key, value in _walk(config):
        if key.lower() in _EXPOSURE_KEYS:
            assert _ports_in(value) <= {22}, f"{path}/{key} opens {value!r}"
    # Also the documented firewall commands (comments included): only tcp:22 may be allowed.
    for flag, rules in re.findall(r"--(allow|rules)[= ](\S+)", raw_text):
        assert rules == "tcp:22", f"--{flag}={rules} opens more than SSH"
    assert "0.0.0.0/0" not in raw_text, "SSH is restricted to the operators' range, not the internet"


def test_only_the_head_has_an_external_ip(config):
    head = config["head_node_type"]
    for name, node_type in config["available_node_types"].items():
        interfaces = node_type["node_config"].get("networkInterfaces")
        assert interfaces, f"{name}: without networkInterfaces Ray adds an external IP"
        has_external = any(iface.get("accessConfigs") for iface in interfaces)
        assert has_external == (name == head), name
        assert "quanticity-ssh-only" in node_type["node_config"]["tags"]["items"], name


# --- negative: the validation really rejects broken configs ----------------------------------------


def _unknown_top_level_key(cfg):
    cfg["open_all_ports"] = True


def _node_types_as_list(cfg):
    cfg["available_node_types"] = list(cfg["available_node_types"].values())


def _cpu_as_string(cfg):
    cfg["available_node_types"]["cpu-worker"]["resources"]["CPU"] = "8"


def _missing_node_config(cfg):
    del cfg["available_node_types"]["cpu-worker"]["node_config"]


@pytest.mark.parametrize("mutate", [_unknown_top_level_key, _node_types_as_list, _cpu_as_string, _missing_node_config])
def test_schema_rejects_broken_config(config, schema, mutate):
    broken = copy.deepcopy(config)
    mutate(broken)
    with pytest.raises(jsonschema.ValidationError):
        _schema_validate(broken, schema)
    with pytest.raises(jsonschema.ValidationError):
        validate_config(broken)


def test_ray_validator_rejects_unknown_head_node_type(config, schema):
    # Schema-valid, but Ray's own validation catches the dangling reference.
    broken = copy.deepcopy(config)
    broken["head_node_type"] = "no-such-type"
    _schema_validate(broken, schema)
    with pytest.raises(ValueError, match="head_node_type"):
        validate_config(broken)
