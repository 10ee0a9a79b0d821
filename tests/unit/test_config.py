"""Config: the shipped files load; every kind of bad input fails naming file, key and value."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from quanticity.config import ConfigError, load_config

pytestmark = pytest.mark.unit

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config"


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(REPO_CONFIG, target)
    return target


def test_shipped_config_loads() -> None:
    config = load_config(REPO_CONFIG, environ={})
    assert config.system.universe.symbols[:4] == ["SPX", "SPY", "QQQ", "IWM"]
    assert config.system.ray.dashboard_host == "127.0.0.1"
    assert config.trading.risk.daily_loss_halt_pct == 6.0


def test_unknown_key_names_file_key_and_value(config_dir: Path) -> None:
    path = config_dir / "trading.yaml"
    path.write_text(path.read_text().replace("max_orders_per_minute: 30", "max_oder_rate: 30"))
    with pytest.raises(ConfigError) as err:
        load_config(config_dir, environ={})
    message = str(err.value)
    assert "trading.yaml" in message and "risk.max_oder_rate = 30" in message and "unknown key" in message


def test_wrong_type_names_file_key_and_value(config_dir: Path) -> None:
    path = config_dir / "system.yaml"
    path.write_text(path.read_text().replace("heartbeat_interval_s: 1.0", "heartbeat_interval_s: often"))
    with pytest.raises(ConfigError) as err:
        load_config(config_dir, environ={})
    assert "system.yaml: supervisor.heartbeat_interval_s = 'often'" in str(err.value)


def test_missing_required_value(config_dir: Path) -> None:
    path = config_dir / "market.yaml"
    path.write_text(path.read_text().replace("  SPY:   {spot: 590.0,", "  SPY:   {"))
    with pytest.raises(ConfigError) as err:
        load_config(config_dir, environ={})
    assert "market.yaml: underlyings.SPY.spot = '<missing>'" in str(err.value)


def test_constraint_violation_and_cross_field_rule(config_dir: Path) -> None:
    path = config_dir / "trading.yaml"
    path.write_text(path.read_text().replace("daily_loss_warn_pct: 4.0", "daily_loss_warn_pct: 7.0"))
    with pytest.raises(ConfigError, match="daily_loss_warn_pct"):
        load_config(config_dir, environ={})


def test_universe_symbol_without_market_entry(config_dir: Path) -> None:
    path = config_dir / "system.yaml"
    path.write_text(path.read_text().replace("zero_dte: [SPX, SPY, QQQ, IWM]", "zero_dte: [SPX, SPY, QQQ, IWM, DIA]"))
    with pytest.raises(ConfigError, match=r"\['DIA'\]"):
        load_config(config_dir, environ={})


def test_invalid_yaml_and_stray_file(config_dir: Path) -> None:
    (config_dir / "trading.yaml").write_text("risk: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(config_dir, environ={})
    shutil.copy(REPO_CONFIG / "trading.yaml", config_dir / "trading.yaml")
    (config_dir / "tradng.yaml").write_text("{}")
    with pytest.raises(ConfigError, match="tradng.yaml"):
        load_config(config_dir, environ={})


def test_redis_url_from_environment() -> None:
    config = load_config(REPO_CONFIG, environ={"REDIS_URL": "redis://10.0.0.5:6379/1"})
    assert config.system.redis.url == "redis://10.0.0.5:6379/1"


def test_config_is_frozen() -> None:
    config = load_config(REPO_CONFIG, environ={})
    with pytest.raises(Exception, match="frozen"):
        config.trading.risk.account_equity = 1.0  # type: ignore[misc]


def test_cli_reports_bad_config_and_exits_2(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from supervisors.cli import main

    path = config_dir / "trading.yaml"
    path.write_text(path.read_text().replace("max_orders_per_minute: 30", "max_orders_per_minute: lots"))
    assert main(["--config-dir", str(config_dir), "status"]) == 2
    out = capsys.readouterr().err
    assert "trading.yaml" in out and "risk.max_orders_per_minute" in out and "'lots'" in out
