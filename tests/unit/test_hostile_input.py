"""Hostile input, across every door the plugin has: one table, one clear error per case.

Each case is a whole pytest run (pytester, in process) with a malformed topology or compose
file, marker, ini value, command-line option or environment. Every case must end with one
message that names the file/key/value and what would be valid, and never with a traceback.
The per-loader details are tested in tests/unit/test_topology_*.py; this table checks that
each kind of mistake also comes out of *pytest* that way, whichever door it came through.

No case needs a Docker engine: the engine cases point DOCKER_HOST at nothing.
"""

from __future__ import annotations

import textwrap
import time
from dataclasses import dataclass, field

import pytest

from pytest_dcfire.topology.load import parse_topology
from pytest_dcfire.topology.model import NAME_PATTERN

GOOD = """
sites: [pangyo, ansan]
services:
  db:
    site: pangyo
    image: debian:bookworm-slim
    healthcheck: {tcp: 5432}
"""

BOMB = (
    "a: &a ['lol','lol','lol','lol','lol','lol','lol','lol','lol']\n"
    + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
    )
    + "sites: [a]\nservices: {}\n"
)


@dataclass
class Case:
    """One hostile run: files to write, ini lines, CLI args, environment, what must be said."""

    id: str
    expected: str
    files: dict[str, str | bytes] = field(default_factory=dict)
    ini: str = "dcfire_topology = topology.yml"
    args: tuple[str, ...] = ("--co",)
    env: dict[str, str] = field(default_factory=dict)
    test: str = "def test_plain():\n    pass\n"
    #: USAGE_ERROR for configuration (nothing runs); TESTS_FAILED for the engine.
    exit: pytest.ExitCode = pytest.ExitCode.USAGE_ERROR


def topo(text: str, name: str = "topology.yml") -> dict[str, str | bytes]:
    return {name: textwrap.dedent(text)}


def service(extra: str, site: str = "pangyo", name: str = "db") -> dict[str, str | bytes]:
    body = textwrap.indent(textwrap.dedent(extra).strip(), "    ")
    return topo(
        f"sites: [pangyo, ansan]\nservices:\n  {name}:\n    site: {site}\n"
        f"    image: debian:bookworm-slim\n{body}\n"
    )


def compose(text: str) -> dict[str, str | bytes]:
    return topo(text, "compose.yml")


COMPOSE_INI = "dcfire_topology = compose.yml"


def marker(args: str) -> Case:
    return Case(
        id=f"marker dc_fire({args})",
        expected="",
        files=topo(GOOD),
        test=f"from pytest_dcfire import dc_fire\n\n@dc_fire({args})\ndef test_burn():\n    pass\n",
    )


def with_expected(case: Case, expected: str) -> Case:
    case.expected = expected
    return case


ENGINE_TEST = "def test_needs_engine(dcfire_topology):\n    pass\n"


def engine(docker_host: str, expected: str, **env: str) -> Case:
    return Case(
        id=f"DOCKER_HOST={docker_host}" + "".join(f" {k}={v}" for k, v in env.items()),
        expected=expected,
        files=topo(GOOD),
        args=(),
        env={"DOCKER_HOST": docker_host, **env},
        test=ENGINE_TEST,
        exit=pytest.ExitCode.TESTS_FAILED,
    )


CASES = [
    # -- topology YAML --------------------------------------------------------------------
    Case("yaml alias bomb", "aliases expand this document to more than 100000 nodes", topo(BOMB)),
    Case("yaml recursive alias", "found a recursive alias", topo("sites: &a [*a]\n")),
    Case("yaml empty file", "topology.yml: the file is empty", topo("")),
    Case("yaml a list", "expected a mapping with `sites` and `services`", topo("- a\n- b\n")),
    Case(
        "yaml syntax",
        "topology.yml: line 2, column 9: invalid YAML",
        topo("sites: [a\nservices: {}\n"),
    ),
    Case(
        "yaml duplicate key",
        "duplicate key",
        topo("sites: [a]\nsites: [b]\nservices: {}\n"),
    ),
    Case(
        "yaml not utf-8",
        "topology.yml: not UTF-8 text",
        {"topology.yml": b"sites: [\xff\xfe]\nservices: {}\n"},
    ),
    Case(
        "yaml python tag",
        "invalid YAML",
        topo("sites: !!python/object/apply:os.system ['id']\nservices: {}\n"),
    ),
    Case(
        "yaml shell in service name",
        "services['db;reboot']: 'db;reboot' is not a valid service name",
        topo(
            "sites: [pangyo]\nservices:\n  'db;reboot':\n    site: pangyo\n"
            "    image: debian:bookworm-slim\n"
        ),
    ),
    Case(
        "yaml command substitution in site",
        "$(reboot)",
        topo("sites: [pangyo, '$(reboot)']\nservices: {}\n"),
    ),
    Case("yaml dash-leading site", "-rf", topo("sites: [pangyo, '-rf']\nservices: {}\n")),
    Case("yaml unknown site", "services.db.site: unknown site 'pangyoo'", service("", "pangyoo")),
    Case("yaml port out of range", "services.db.ports[0]", service("ports: [70000]")),
    Case("yaml relative mount", "services.db.volumes.data", service("volumes: {data: data}")),
    Case("yaml bad health kind", "services.db.healthcheck", service("healthcheck: {udp: 53}")),
    Case("yaml command not argv", "services.db.command", service("command: {run: x}")),
    Case("yaml env without =", "services.db.environment[0]", service("environment: [NOEQUALS]")),
    Case(
        "yaml storage size",
        "sites.pangyo.storage",
        topo("sites: {pangyo: {storage: lots}}\nservices: {}\n"),
    ),
    Case(
        "yaml dependency cycle",
        "cycle",
        topo(
            """
            sites: [a]
            services:
              x: {site: a, image: i, depends_on: [y]}
              y: {site: a, image: i, depends_on: [x]}
            """
        ),
    ),
    Case(
        "yaml image and build missing",
        "services.db",
        topo("sites: [a]\nservices:\n  db: {site: a}\n"),
    ),
    # -- compose files --------------------------------------------------------------------
    Case(
        "compose service without site",
        "compose.yml: services.web",
        compose("services:\n  web:\n    image: nginx\n"),
        ini=COMPOSE_INI,
    ),
    Case(
        "compose network_mode host",
        "compose.yml: services.web.network_mode",
        compose(
            "services:\n  web:\n    image: nginx\n    network_mode: host\n"
            "    labels: {dcfire.site: a}\n"
        ),
        ini=COMPOSE_INI,
    ),
    Case(
        "compose variable interpolation",
        "compose.yml: services.web",
        compose("services:\n  web:\n    image: ${IMAGE}\n    labels: {dcfire.site: a}\n"),
        ini=COMPOSE_INI,
    ),
    Case(
        "compose bad port",
        "compose.yml: services.web.ports[0]",
        compose(
            "services:\n  web:\n    image: nginx\n    ports: ['abc']\n    x-dcfire: {site: a}\n"
        ),
        ini=COMPOSE_INI,
    ),
    Case(
        "compose privileged",
        "compose.yml: services.web.privileged",
        compose(
            "services:\n  web:\n    image: nginx\n    privileged: true\n    x-dcfire: {site: a}\n"
        ),
        ini=COMPOSE_INI,
    ),
    # -- marker arguments -----------------------------------------------------------------
    with_expected(marker("'pangyoo'"), "unknown site 'pangyoo' (did you mean 'pangyo'?)"),
    with_expected(marker(""), "name at least one site to burn; one of: ansan, pangyo"),
    with_expected(marker("'pangyo', mode='meltdown'"), "unknown mode 'meltdown'"),
    with_expected(marker("'pangyo', network='yes'"), "network='yes' must be True or False"),
    with_expected(marker("42"), "site 42 is not a site name"),
    with_expected(marker("'pangyo', sites=['ansan']"), "unknown keyword 'sites'"),
    with_expected(marker("'pangyo; reboot'"), "unknown site 'pangyo; reboot'"),
    # -- ini values -----------------------------------------------------------------------
    Case(
        "ini timeout negative",
        "dcfire_recovery_timeout = '-5' is not valid",
        ini="dcfire_recovery_timeout = -5",
    ),
    Case(
        "ini timeout nan",
        "dcfire_recovery_timeout = 'nan' is not valid",
        ini="dcfire_recovery_timeout = nan",
    ),
    Case("ini keep", "dcfire_keep = 'maybe' is not a boolean", ini="dcfire_keep = maybe"),
    Case(
        "ini toxiproxy",
        "dcfire_toxiproxy = 'socat' is not valid; use embedded",
        ini="dcfire_toxiproxy = socat",
    ),
    Case(
        "ini share",
        "dcfire_share = 'everyone' is not valid; use worker (each pytest-xdist worker starts "
        "its own copy; the default) or session",
        ini="dcfire_topology = topology.yml\ndcfire_share = everyone",
        files=topo(GOOD),
    ),
    Case(
        "ini missing topology",
        "dcfire_topology = 'missing.yml': no such file",
        ini="dcfire_topology = missing.yml",
    ),
    Case(
        "ini topology is a dir",
        "dcfire_topology = 'sub': no such file",
        files={"sub/x": "x"},
        ini="dcfire_topology = sub",
    ),
    # -- command-line options -------------------------------------------------------------
    Case(
        "cli missing topology",
        "--dcfire-topology = 'nowhere.yml': no such file",
        ini="",
        args=("--co", "--dcfire-topology", "nowhere.yml"),
    ),
    Case(
        "cli share",
        "--dcfire-share = 'sessions' is not valid; use worker (each pytest-xdist worker",
        files=topo(GOOD),
        args=("--co", "--dcfire-share", "sessions"),
    ),
    Case(
        "cli plan without topology",
        "--dcfire-plan needs a topology",
        ini="",
        args=("--dcfire-plan",),
    ),
    Case(
        "cli topology that is compose garbage",
        "compose.yml: services: expected a mapping",
        compose("services: [a, b]\n"),
        ini="",
        args=("--co", "--dcfire-topology", "compose.yml"),
    ),
    # -- environment: the engine ----------------------------------------------------------
    engine(
        "tcp://127.0.0.1:1",
        "no Docker engine at tcp://127.0.0.1:1 (DOCKER_HOST): Connection refused",
    ),
    engine(
        "unix:///nonexistent.sock",
        "no Docker engine at unix:///nonexistent.sock (DOCKER_HOST): No such file or directory",
    ),
    engine(
        "ssh://nobody@127.0.0.1:1", "no Docker engine at ssh://nobody@127.0.0.1:1 (DOCKER_HOST)"
    ),
    engine(
        "tcp://127.0.0.1:notaport", "no Docker engine at tcp://127.0.0.1:notaport (DOCKER_HOST)"
    ),
    engine("gopher://nowhere", "no Docker engine at gopher://nowhere (DOCKER_HOST)"),
    engine(
        "tcp://127.0.0.1:1",
        "no Docker engine at tcp://127.0.0.1:1 (DOCKER_HOST)",
        DOCKER_TLS_VERIFY="1",
        DOCKER_CERT_PATH="/nonexistent/certs",
    ),
]


def _ids(cases: list[Case]) -> list[str]:
    ids = [c.id for c in cases]
    return [f"{i}#{ids[:n].count(i)}" if ids.count(i) > 1 else i for n, i in enumerate(ids)]


def test_the_table_is_big_enough() -> None:
    kinds = {c.id.split()[0] for c in CASES}
    assert len(CASES) >= 30
    assert {"yaml", "compose", "marker", "ini", "cli", "DOCKER_HOST=tcp://127.0.0.1:1"} <= kinds | {
        c.id for c in CASES
    }


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_hostile_input_gets_one_clear_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, case: Case
) -> None:
    for name, content in case.files.items():
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    pytester.makeini(f"[pytest]\n{case.ini}\n")
    pytester.makepyfile(test_case=case.test)
    for key in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    started = time.perf_counter()
    result = pytester.runpytest("-p", "no:cacheprovider", *case.args)
    elapsed = time.perf_counter() - started
    output = result.stdout.str() + "\n" + result.stderr.str()
    assert result.ret == case.exit, output
    assert case.expected in output, output
    assert "Traceback" not in output, output
    # One error, not a cascade or a chain: the message appears once above pytest's short
    # summary (whose lines are cut to the terminal's width, so they are not counted).
    details = output.split("short test summary info")[0]
    assert details.count(case.expected) <= 1, output
    assert "During handling of the above exception" not in output, output
    assert elapsed < 30, f"{case.id} took {elapsed:.1f} s"
    if case.exit == pytest.ExitCode.TESTS_FAILED:
        # Engine trouble fails the tests that need it, not the plugin: no internal error.
        assert "INTERNALERROR" not in output, output


@pytest.mark.timeout(60)  # expanded, the bomb would run for minutes
def test_alias_bomb_is_refused_quickly() -> None:
    with pytest.raises(Exception, match="alias bomb"):
        parse_topology(BOMB, "topology.yml")


@pytest.mark.parametrize(
    "name", ["db;reboot", "$(id)", "`id`", "-rf", "a b", "a/../b", "x\ny", "é", "a" * 64]
)
def test_names_that_reach_commands_are_refused(name: str) -> None:
    """Site and service names end up in container names, labels and the helper's requests."""
    assert NAME_PATTERN.match(name) is None


def test_no_command_is_a_shell_string() -> None:
    """Commands are argv lists: no `shell=True`, no os.system/os.popen anywhere in the plugin."""
    import ast
    from pathlib import Path

    import pytest_dcfire

    offenders = []
    for path in Path(pytest_dcfire.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = ast.unparse(node.func)
            shell = any(
                k.arg == "shell" and not (isinstance(k.value, ast.Constant) and not k.value.value)
                for k in node.keywords
            )
            if shell or func in ("os.system", "os.popen", "subprocess.getoutput"):
                offenders.append(f"{path.name}:{node.lineno}: {ast.unparse(node)[:80]}")
    assert offenders == []
