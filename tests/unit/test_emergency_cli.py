"""The emergency CLI refuses to flatten without an explicit confirmation (no Ray needed to refuse)."""

from __future__ import annotations

import pytest

from supervisors.cli import _parser, main

pytestmark = pytest.mark.unit


def test_flatten_without_yes_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flatten"]) == 2
    assert "--yes" in capsys.readouterr().out


def test_emergency_commands_parse() -> None:
    args = _parser().parse_args(["flatten", "--yes", "--reason", "feed outage"])
    assert args.command == "flatten" and args.yes and args.reason == "feed outage"
    assert _parser().parse_args(["cancel-all"]).reason == "operator cancel-all (CLI)"
