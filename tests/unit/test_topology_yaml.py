"""Reading the file itself: YAML errors with line and column, hostile YAML refused quickly."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_dcfire.errors import TopologyError
from pytest_dcfire.topology.load import (
    MAX_FILE_BYTES,
    is_compose_document,
    load_topology,
    parse_topology,
)


def error(text: str) -> str:
    with pytest.raises(TopologyError) as info:
        parse_topology(text, "topology.yml")
    return str(info.value)


def billion_laughs() -> str:
    lines = ['lol0: &lol0 "lol"']
    for level in range(1, 10):
        refs = ", ".join([f"*lol{level - 1}"] * 9)
        lines.append(f"lol{level}: &lol{level} [{refs}]")
    lines.append("sites: [a]")
    lines.append("services: {s: {site: a, image: x, command: *lol9}}")
    return "\n".join(lines) + "\n"


def merge_key_bomb() -> str:
    lines = ["m0: &m0 {a: 1, b: 2}"]
    for level in range(1, 10):
        refs = ", ".join([f"*m{level - 1}"] * 9)
        lines.append(f"m{level}: &m{level} {{<<: [{refs}], k{level}: 1}}")
    return "\n".join(lines) + "\n"


# A bomb that were expanded would run for minutes: the timeout catches that on any machine,
# where a wall-clock bound of a second fails on a loaded one.
@pytest.mark.timeout(60)
@pytest.mark.parametrize("text", [billion_laughs(), merge_key_bomb()], ids=["lists", "merge-keys"])
def test_alias_bombs_are_refused_quickly(text: str) -> None:
    message = error(text)
    assert "aliases expand this document to more than 100000 nodes" in message
    assert "alias bomb" in message
    assert message.startswith("topology.yml: line ")


@pytest.mark.parametrize(
    "text",
    ["a: &a [*a]\n", "a: &a {b: *a}\n", "a: &a [x, {y: [*a]}]\n"],
    ids=["list", "map", "deep"],
)
def test_recursive_aliases_are_refused(text: str) -> None:
    assert error(text) == (
        "topology.yml: line 1, column 4: invalid YAML: found a recursive alias (an anchor used "
        "inside itself)"
    )


@pytest.mark.parametrize(
    "text", ["[" * 5000 + "]" * 5000, "a:\n" + "".join(" " * i + "b:\n" for i in range(1, 500))]
)
@pytest.mark.timeout(60)
def test_deep_nesting_is_refused_quickly(text: str) -> None:
    assert "invalid YAML: nested more than 64 levels deep" in error(text)


def test_anchors_and_merge_keys_work() -> None:
    topology = parse_topology(
        """
x-base: &base {image: x, environment: {TZ: UTC}, ports: [80]}
sites: [a, b]
services:
  one: {<<: *base, site: a}
  two: {<<: *base, site: b, ports: [81], depends_on: [one]}
""",
        "topology.yml",
    )
    assert topology.service("one").env == {"TZ": "UTC"}
    assert topology.service("two").ports == (81,)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "sites: [a\nservices: {}\n",
            "topology.yml: line 2, column 9: invalid YAML: expected ',' or ']', but got ':' (while "
            "parsing a flow sequence starting at line 1)",
        ),
        (
            "sites: [a]\nservices:\n  db:\n    site: a\n   image: x\n",
            "topology.yml: line 5, column 4: invalid YAML: expected <block end>, but found '<block "
            "mapping start>' (while parsing a block mapping starting at line 3) (check the indentation)",
        ),
        (
            "sites:\n\t- a\n",
            "topology.yml: line 2, column 1: invalid YAML: found character '\\t' that cannot start any "
            "token (while scanning for the next token)",
        ),
        (
            "sites: [a]\nservices:\n  db: {site: a, image: x}\n  db: {site: a, image: y}\n",
            "topology.yml: line 4, column 3: invalid YAML: found duplicate key 'db' (in the mapping "
            "starting at line 3)",
        ),
        (
            "a: 1\n---\nb: 2\n",
            "topology.yml: line 2, column 1: invalid YAML: expected a single document in the stream, "
            "but found another document",
        ),
        (
            "sites: [a]\nservices: {s\x00: 1}\n",
            "topology.yml: line 2, column 13: invalid YAML: unacceptable character '\\x00': special "
            "characters are not allowed",
        ),
        (
            "a: *nope\n",
            "topology.yml: line 1, column 4: invalid YAML: found undefined alias 'nope'",
        ),
        (
            "a: !!python/object:os.system x\n",
            "topology.yml: line 1, column 4: invalid YAML: could not determine a constructor for the "
            "tag 'tag:yaml.org,2002:python/object:os.system'",
        ),
        ("a: 2001-13-45\n", "topology.yml: invalid YAML value: month must be in 1..12"),
        (
            "",
            "topology.yml: the file is empty: a topology needs `sites` and `services` (or, in a "
            "compose file, `services` each labelled with its site)",
        ),
        ("# only a comment\n", "topology.yml: the file is empty*"),
        (
            "- sites\n- services\n",
            "topology.yml: expected a mapping with `sites` and `services` at the top, found a list",
        ),
        (
            "just words",
            "topology.yml: expected a mapping with `sites` and `services` at the top, found a string "
            "('just words')",
        ),
        (
            "sites: [2001-12-14]\nservices: {}\n",
            "topology.yml: 2 mistakes:\n"
            "  sites[0]: expected a site name (a string), found a date (2001-12-14)\n"
            "  services: no services: define at least one",
        ),
        (
            "sites: !!set {a, b}\nservices: {}\n",
            "topology.yml: 2 mistakes:\n"
            "  sites: expected a list of site names or a mapping of site name to options, "
            "found a set\n"
            "  services: no services: define at least one",
        ),
        (
            "sites: [a]\nservices: {s: {site: a, image: x, ports: [0x" + "f" * 3000 + "]}}\n",
            "topology.yml: services.s.ports[0]: port <a very large integer> is out of range (1-65535)",
        ),
    ],
)
def test_yaml_errors(text: str, expected: str) -> None:
    message = error(text)
    if expected.endswith("*"):
        assert message.startswith(expected[:-1])
    else:
        assert message == expected


def test_file_errors(tmp_path: Path) -> None:
    def fails(path: Path) -> str:
        with pytest.raises(TopologyError) as info:
            load_topology(path)
        return str(info.value)

    assert fails(tmp_path / "nope.yml") == f"{tmp_path / 'nope.yml'}: no such file"
    assert fails(tmp_path) == f"{tmp_path}: is a directory, not a topology file"
    binary = tmp_path / "binary.yml"
    binary.write_bytes(b"sites: [\xff\xfe]\n")
    assert fails(binary) == f"{binary}: not UTF-8 text (byte 8): is this the right file?"
    big = tmp_path / "big.yml"
    big.write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    assert fails(big) == f"{big}: larger than 4 MiB: not a topology file"


def test_a_byte_order_mark_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "topology.yml"
    path.write_bytes(b"\xef\xbb\xbfsites: [a]\nservices: {s: {site: a, image: x}}\n")
    assert load_topology(path).site_names == ("a",)


@pytest.mark.parametrize(
    ("doc", "filename", "compose"),
    [
        ({"sites": ["a"], "services": {}}, "topology.yml", False),
        ({"sites": ["a"], "services": {}}, "docker-compose.yml", True),
        ({"services": {"s": {"image": "x"}}}, "compose.yaml", True),
        ({"services": {"s": {"image": "x", "labels": {"dcfire.site": "a"}}}}, "t.yml", True),
        ({"services": {"s": {"image": "x", "site": "a"}}}, "t.yml", False),
        ({"version": "3", "services": {"s": {"site": "a"}}}, "t.yml", True),
        ({"x-dcfire": {"sites": ["a"]}, "services": {}}, "t.yml", True),
        ({"name": "x"}, "t.yml", False),
    ],
)
def test_which_reader_reads_a_document(
    doc: dict[str, object], filename: str, compose: bool
) -> None:
    assert is_compose_document(doc, filename) is compose


def test_source_names_the_file_in_the_model(tmp_path: Path) -> None:
    path = tmp_path / "topology.yml"
    path.write_text("sites: [a]\nservices: {s: {site: a, image: x}}\n")
    assert load_topology(str(path)).source == str(path)
