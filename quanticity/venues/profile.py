"""The venue profile of a run: which IBKR endpoint and which data-source environment each mode uses.

- ``tws``: the hosted TWS simulator and UW/AV loopback twins on 127.0.0.1; the fetcher's
  environment is synthesised (twin URLs, the loopback token the twins were started with) — no
  secret is involved.
- ``live``: a real TWS at ``IB_HOST``/``IB_PORT`` (default: the ``ibkr`` settings) and the real
  APIs with ``UW_API_TOKEN`` (or ``UNUSUAL_WHALES_API_TOKEN``) and ``ALPHA_VANTAGE_API_KEY`` from the
  environment. :func:`check_live_environment` refuses to start, naming each missing variable,
  before anything connects anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping

from quanticity.config.loader import ConfigError
from quanticity.config.models import VenueSection
from quanticity.venues.ibkr.config import IbkrConfig

__all__ = [
    "LOOPBACK_TOKEN",
    "check_live_environment",
    "ibkr_config",
    "live_ibkr_endpoint",
    "source_environment",
    "twin_environment",
]

LOOPBACK_TOKEN = "loopback-twin"
"""What the loopback UW/AV twins accept as token/key: not a secret, they only listen on 127.0.0.1."""

UW_TOKEN_NAMES = ("UW_API_TOKEN", "UNUSUAL_WHALES_API_TOKEN")
AV_KEY_NAME = "ALPHA_VANTAGE_API_KEY"


def ibkr_config(venue: VenueSection, host: str | None = None, port: int | None = None) -> IbkrConfig:
    """The IBKR settings of ``venue`` with the endpoint (when given) filled in."""
    data = dict(venue.ibkr)
    if host is not None:
        data["host"] = host
    if port is not None:
        data["port"] = port
    return IbkrConfig.model_validate(data)


def live_ibkr_endpoint(venue: VenueSection, environ: Mapping[str, str]) -> tuple[str, int]:
    """(host, port) of the real TWS: ``IB_HOST``/``IB_PORT`` when set, else the ``ibkr`` settings."""
    base = ibkr_config(venue)
    host = environ.get("IB_HOST", "").strip() or base.host
    raw_port = environ.get("IB_PORT", "").strip()
    if not raw_port:
        return host, base.resolved_port
    if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
        raise ConfigError(f"environment: IB_PORT = {raw_port!r}: not a TCP port (7497 paper, 7496 live)")
    return host, int(raw_port)


def _uw_token(environ: Mapping[str, str]) -> str:
    return next((environ[n].strip() for n in UW_TOKEN_NAMES if environ.get(n, "").strip()), "")


def check_live_environment(venue: VenueSection, environ: Mapping[str, str]) -> None:
    """Raise :class:`ConfigError` naming every credential a live run needs and the environment lacks."""
    problems = []
    live_ibkr_endpoint(venue, environ)  # a malformed IB_PORT is reported on its own
    if venue.fetcher:
        if not _uw_token(environ):
            problems.append(f"{' or '.join(UW_TOKEN_NAMES)} is not set (Unusual Whales API token)")
        if not environ.get(AV_KEY_NAME, "").strip():
            problems.append(f"{AV_KEY_NAME} is not set (Alpha Vantage API key)")
    if problems:
        raise ConfigError(
            "refusing to start --live: "
            + "; ".join(problems)
            + " — see .env.example (secrets only from the environment)"
        )


def source_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment the fetcher's source YAMLs read in ``live`` (the UW token under its YAML name)."""
    out = dict(environ)
    token = _uw_token(environ)
    if token:
        out["UW_API_TOKEN"] = token
    return out


def twin_environment(uw_port: int, av_port: int) -> dict[str, str]:
    """The environment that points the source YAMLs at the loopback twins (``tws`` mode)."""
    return {
        "UW_API_TOKEN": LOOPBACK_TOKEN,
        "ALPHA_VANTAGE_API_KEY": LOOPBACK_TOKEN,
        "UW_BASE_URL": f"http://127.0.0.1:{uw_port}/api",
        "UW_WS_URL": f"ws://127.0.0.1:{uw_port}/api/socket",
        "AV_BASE_URL": f"http://127.0.0.1:{av_port}",
    }
