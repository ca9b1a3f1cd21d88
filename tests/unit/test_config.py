"""Settings parsing (pure): precedence and the exact messages of bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_dcfire.config import parse_bool, parse_timeout, parse_toxiproxy, read_settings
from pytest_dcfire.errors import ConfigError


def test_defaults(tmp_path: Path) -> None:
    s = read_settings({}, {}, None, tmp_path)
    assert (s.topology, s.recovery_timeout, s.toxiproxy, s.keep, s.plan) == (
        None,
        60.0,
        "embedded",
        False,
        False,
    )


def test_cli_topology_is_relative_to_the_invocation_dir(tmp_path: Path) -> None:
    (tmp_path / "ini").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "ini" / "t.yml").write_text("x")
    (tmp_path / "run" / "t.yml").write_text("x")
    inipath = tmp_path / "ini" / "pytest.ini"
    s = read_settings({"dcfire_topology": "t.yml"}, {}, inipath, tmp_path / "run")
    assert s.topology == tmp_path / "ini" / "t.yml"
    s = read_settings(
        {"dcfire_topology": "t.yml"}, {"topology": "t.yml"}, inipath, tmp_path / "run"
    )
    assert s.topology == tmp_path / "run" / "t.yml"


@pytest.mark.parametrize(
    ("text", "value"),
    [("true", True), ("1", True), ("YES", True), ("off", False), ("0", False), ("", False)],
)
def test_booleans(text: str, value: bool) -> None:
    assert parse_bool("k", text) is value


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "ten", ""])
def test_bad_timeouts(text: str) -> None:
    with pytest.raises(ConfigError, match=rf"^k = '{text}' is not valid; give a positive number"):
        parse_timeout("k", text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("embedded", "embedded"),
        ("image: ghcr.io/shopify/toxiproxy:2.12.0 ", "image:ghcr.io/shopify/toxiproxy:2.12.0"),
        ("url:http://127.0.0.1:8474", "url:http://127.0.0.1:8474"),
    ],
)
def test_toxiproxy_forms(text: str, value: str) -> None:
    assert parse_toxiproxy("k", text) == value


@pytest.mark.parametrize("text", ["image:", "url:", "url:ftp://x", "socat", "Embedded"])
def test_bad_toxiproxy_forms(text: str) -> None:
    with pytest.raises(
        ConfigError, match=r"use embedded, image:<ref> .* or url:<http://host:port>"
    ):
        parse_toxiproxy("k", text)
