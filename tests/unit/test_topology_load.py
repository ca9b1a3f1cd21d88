"""Our topology format: valid files give exact models; every mistake gives one clear error."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from pytest_dcfire.errors import TopologyError
from pytest_dcfire.topology.load import load_topology, parse_topology
from pytest_dcfire.topology.model import Build, HealthCheck, Service, Site, Topology, Volume


def matches(message: str, pattern: str) -> bool:
    """Whole-message match where only `*` is a wildcard (messages are full of brackets)."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), message) is not None


def parse(text: str, base: Path | None = None) -> Topology:
    return parse_topology(textwrap.dedent(text), "topology.yml", base)


def error(text: str, base: Path | None = None) -> str:
    with pytest.raises(TopologyError) as info:
        parse(text, base)
    return str(info.value)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory with a build context `db/` (with a Dockerfile) beside the topology."""
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "Dockerfile").write_text("FROM debian:bookworm-slim\n")
    (tmp_path / "db" / "Dockerfile.replica").write_text("FROM debian:bookworm-slim\n")
    return tmp_path


SPEC_EXAMPLE = """
sites: [pangyo, ansan]
services:
  db:
    site: pangyo
    build: ./db
    ports: [5432]
    volumes: {data: /var/lib/postgresql/data}
    healthcheck: {tcp: 5432}
  replica:
    site: ansan
    build: ./db
    depends_on: [db]
  api:
    site: [pangyo, ansan]
    image: api:1
    depends_on: [db, replica]
"""


def test_the_spec_example_loads_exactly(project: Path) -> None:
    path = project / "topology.yml"
    path.write_text(SPEC_EXAMPLE)
    topology = load_topology(path)
    build = Build(context=str((project / "db").resolve()))
    assert topology == Topology(
        source=str(path),
        sites=(Site("pangyo"), Site("ansan")),
        services=(
            Service(
                name="db",
                base="db",
                site="pangyo",
                build=build,
                ports=(5432,),
                volumes=(Volume("data", "/var/lib/postgresql/data"),),
                healthcheck=HealthCheck("tcp", port=5432),
            ),
            Service(name="replica", base="replica", site="ansan", build=build, depends_on=("db",)),
            Service(
                name="api@pangyo",
                base="api",
                site="pangyo",
                image="api:1",
                depends_on=("db", "replica"),
            ),
            Service(
                name="api@ansan",
                base="api",
                site="ansan",
                image="api:1",
                depends_on=("db", "replica"),
            ),
        ),
    )
    assert topology.instances_of("api") == (
        topology.service("api@pangyo"),
        topology.service("api@ansan"),
    )


def test_every_key_in_its_richest_form(project: Path) -> None:
    topology = parse(
        """
        name: kakao-like
        sites:
          pangyo: {storage: 1G}
          ansan: {storage: 512M}
          gasan:
        services:
          db:
            site: [pangyo]
            build: {context: ./db, dockerfile: Dockerfile.replica, args: {PG: 16, DEBUG: true}}
            command: postgres -c "shared_buffers=64MB" -c fsync=on
            entrypoint: ["/usr/local/bin/docker-entrypoint.sh"]
            environment: {POSTGRES_PASSWORD: secret, WORKERS: 4, DEBUG: false, RATIO: 0.5, EMPTY: ""}
            ports: [5432, "8008", "9187/tcp"]
            volumes: {pg.data: /var/lib/postgresql/data, wal: /wal}
            healthcheck: {cmd: pg_isready -U postgres, timeout: 1m30s, interval: 0.5}
          api:
            site: ansan
            image: registry.local:5000/api@sha256:abc
            environment: ["A=1", "B=x=y", "C="]
            healthcheck: {http: "/health?deep=1", port: 8080, budget: 20}
            depends_on: [db@pangyo]
        x-notes: ignored entirely
        """,
        project,
    )
    assert topology.name == "kakao-like"
    assert topology.sites == (Site("pangyo", 1024), Site("ansan", 512), Site("gasan", 256))
    db, api = topology.services
    assert db.name == "db@pangyo" and db.base == "db"
    assert db.build == Build(
        str((project / "db").resolve()), "Dockerfile.replica", (("PG", "16"), ("DEBUG", "true"))
    )
    assert db.command == ("postgres", "-c", "shared_buffers=64MB", "-c", "fsync=on")
    assert db.entrypoint == ("/usr/local/bin/docker-entrypoint.sh",)
    assert db.environment == (
        ("POSTGRES_PASSWORD", "secret"),
        ("WORKERS", "4"),
        ("DEBUG", "false"),
        ("RATIO", "0.5"),
        ("EMPTY", ""),
    )
    assert db.ports == (5432, 8008, 9187)
    assert db.volumes == (Volume("pg.data", "/var/lib/postgresql/data"), Volume("wal", "/wal"))
    assert db.healthcheck == HealthCheck(
        "cmd", cmd=("pg_isready", "-U", "postgres"), budget=90.0, interval=0.5
    )
    assert api.image == "registry.local:5000/api@sha256:abc"
    assert api.env == {"A": "1", "B": "x=y", "C": ""}
    assert api.healthcheck == HealthCheck("http", port=8080, path="/health?deep=1", budget=20.0)
    assert api.depends_on == ("db@pangyo",)


@pytest.mark.parametrize(
    ("storage", "megabytes"),
    [(16, 16), ("512M", 512), ("1G", 1024), ("1.5GiB", 1536), ("2048k", 2), ("100MB", 100)],
)
def test_storage_sizes(storage: object, megabytes: int) -> None:
    if megabytes < 16:
        assert "at least 16 MiB" in error(
            f"sites: {{a: {{storage: {storage}}}}}\nservices: {{s: {{site: a, image: x}}}}"
        )
        return
    topology = parse(
        f"sites: {{a: {{storage: {storage}}}}}\nservices: {{s: {{site: a, image: x}}}}"
    )
    assert topology.sites == (Site("a", megabytes),)


def test_build_contexts_resolve_against_the_file_not_the_cwd(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    (project / "topology.yml").write_text("sites: [a]\nservices: {db: {site: a, build: db}}\n")
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    topology = load_topology(project / "topology.yml")
    assert topology.service("db").build == Build(str((project / "db").resolve()))


def test_build_context_errors(project: Path) -> None:
    (project / "empty").mkdir()
    (project / "file").write_text("")
    head = "sites: [a]\nservices:\n  db:\n    site: a\n"
    assert error(head + "    build: ./nope\n", project) == (
        f"topology.yml: services.db.build: build context './nope' does not exist "
        f"(looked at {(project / 'nope').resolve()})"
    )
    assert "build context './file' is not a directory" in error(
        head + "    build: ./file\n", project
    )
    assert "services.db.build: no Dockerfile in the build context" in error(
        head + "    build: ./empty\n", project
    )
    assert "services.db.build.dockerfile: no such file 'Nope'" in error(
        head + "    build: {context: ./db, dockerfile: Nope}\n", project
    )
    assert "services.db.build: missing key 'context'" in error(
        head + "    build: {dockerfile: Dockerfile}\n", project
    )
    assert "remote build contexts are not supported" in error(
        head + "    build: https://github.com/x/y.git\n", project
    )


def test_minimal_healthchecks_get_model_defaults() -> None:
    topology = parse(
        """
        sites: [a]
        services:
          s: {site: a, image: x, healthcheck: {tcp: "80"}}
          t: {site: a, image: x, healthcheck: {cmd: [test, -f, /ready]}}
        """
    )
    assert topology.service("s").healthcheck == HealthCheck("tcp", port=80)
    assert topology.service("t").healthcheck == HealthCheck("cmd", cmd=("test", "-f", "/ready"))


def test_null_optional_keys_mean_absent() -> None:
    topology = parse(
        "sites: [a]\nservices:\n  s: {site: a, image: x, ports: null, depends_on: null, environment: null}\n"
    )
    assert topology.service("s") == Service(name="s", base="s", site="a", image="x")


BASE = "sites: [pangyo, ansan]\nservices:\n"


@pytest.mark.parametrize(
    ("services", "expected"),
    [
        # unknown keys, with did-you-mean
        (
            "  db: {site: pangyo, imgae: x}",
            "topology.yml: services.db: unknown key 'imgae' (did you mean 'image'?); one of: build, clock, "
            "command, depends_on, entrypoint, environment, healthcheck, image, ports, site, volumes",
        ),
        (
            "  db: {site: pangyo, image: x, healthcheck: {tcp: 1, timout: 3}}",
            "topology.yml: services.db.healthcheck: unknown key 'timout' (did you mean 'timeout'?); "
            "one of: budget, cmd, http, interval, port, tcp, timeout",
        ),
        (
            "  db: {site: pangyo, image: x, labels: {a: b}}",
            "topology.yml: services.db.labels: 'labels' is a docker-compose key; this file is read as "
            "a pytest-dcfire topology*",
        ),
        # wrong types
        (
            "  db: {site: pangyo, image: x, ports: 5432}",
            "topology.yml: services.db.ports: expected a list of container ports, found an integer (5432)",
        ),
        (
            "  db: [site, pangyo]",
            "topology.yml: services.db: expected a mapping, found a list",
        ),
        (
            "  db: {site: 3, image: x}",
            "topology.yml: services.db.site: expected a site name or a list of site names, found an integer (3)",
        ),
        (
            "  db: {site: pangyo, image: [x]}",
            "topology.yml: services.db.image: expected an image reference (a string), found a list",
        ),
        (
            "  db: {site: pangyo, image: x, command: {a: b}}",
            "topology.yml: services.db.command: expected a list of arguments or a string, found a mapping",
        ),
        (
            "  db: {site: pangyo, image: x, command: [run, [nested]]}",
            "topology.yml: services.db.command[1]: expected a string argument, found a list",
        ),
        (
            "  db: {site: pangyo, image: x, command: 'echo \"unclosed'}",
            "topology.yml: services.db.command: cannot split 'echo \"unclosed' into arguments: No closing quotation",
        ),
        (
            "  db: {site: pangyo, image: x, environment: {A: [1]}}",
            "topology.yml: services.db.environment.A: expected a string, number or boolean variable, found a list",
        ),
        (
            "  db: {site: pangyo, image: x, environment: {A: }}",
            "topology.yml: services.db.environment.A: A has no value: pytest-dcfire does not pass the "
            "host's environment through*",
        ),
        (
            "  db: {site: pangyo, image: x, environment: [A=1, A=2]}",
            "topology.yml: services.db.environment[1]: variable A is set twice",
        ),
        (
            "  db: {site: pangyo, image: x, environment: [B]}",
            "topology.yml: services.db.environment[0]: B has no value*",
        ),
        (
            "  db: {site: pangyo, image: x, depends_on: replica}",
            "topology.yml: services.db.depends_on: expected a list of service names, or a mapping of name to options, found a string ('replica')",
        ),
        (
            "  db: {site: pangyo, image: x}\n  7: {site: pangyo, image: x}",
            "topology.yml: services[7]: keys must be strings, found an integer (7)",
        ),
        # sites and names
        (
            "  db: {site: pangyoo, image: x}",
            "topology.yml: services.db.site: unknown site 'pangyoo' (did you mean 'pangyo'?); one of: ansan, pangyo",
        ),
        (
            "  db: {site: [pangyo, seoul], image: x}",
            "topology.yml: services.db.site[1]: unknown site 'seoul'; one of: ansan, pangyo",
        ),
        (
            "  db: {site: [pangyo, pangyo], image: x}",
            "topology.yml: services.db.site[1]: site 'pangyo' is listed twice: two instances would be called the same",
        ),
        (
            "  db: {site: [], image: x}",
            "topology.yml: services.db.site: empty list of sites: name at least one",
        ),
        (
            "  db: {image: x}",
            "topology.yml: services.db: no site: give `site: <site>` (or a list of sites, one instance "
            "each); one of: ansan, pangyo",
        ),
        (
            "  'db; rm -rf /': {site: pangyo, image: x}",
            "topology.yml: services['db; rm -rf /']: 'db; rm -rf /' is not a valid service name: names "
            "reach container names and commands, so use 1-63 letters, digits, '_', '.' or '-', starting "
            "with a letter or digit",
        ),
        (
            "  db@x: {site: pangyo, image: x}",
            "*'db@x' is not a valid service name*; '@' is reserved for instance names (svc@site)",
        ),
        (
            "  db: {site: pangyo, image: x, volumes: {'../etc': /x}}",
            "topology.yml: services.db.volumes['../etc']: '../etc' is not a valid volume name*",
        ),
        (
            "  db: {site: pangyo, image: x}\n  db.pangyo: {site: pangyo, image: x}\n  other: {site: [pangyo], image: x}",
            "",
        ),
        (
            "  db: {site: [pangyo], image: x}\n  db.pangyo: {site: pangyo, image: x}",
            "topology.yml: services['db.pangyo']: instance 'db.pangyo' and 'db@pangyo' would both be called "
            "'db.pangyo' on the network; rename one",
        ),
        # image and build
        (
            "  db: {site: pangyo}",
            "topology.yml: services.db: no image: give `image:` (an image on the engine, e.g. postgres:16) "
            "or `build:` (a directory with a Dockerfile, e.g. ./db)",
        ),
        (
            "  db: {site: pangyo, image: x, build: .}",
            "topology.yml: services.db: give either `image` or `build`, not both",
        ),
        (
            "  db:",
            "topology.yml: services.db: empty service: give it a site and an image or a build context",
        ),
        (
            "  db: {site: pangyo, image: 'two words'}",
            "topology.yml: services.db.image: 'two words' is not an image reference (e.g. postgres:16)",
        ),
        # dependencies
        (
            "  db: {site: pangyo, image: x}\n  replica: {site: ansan, image: x}\n"
            "  api: {site: [pangyo, ansan], image: x, depends_on: [db, dbb]}",
            "topology.yml: services.api.depends_on[1]: unknown service 'dbb' (did you mean 'db'?); one of: db, replica",
        ),
        (
            "  db: {site: [pangyo, ansan], image: x}\n  api: {site: ansan, image: x, depends_on: [db@seoul]}",
            "topology.yml: services.api.depends_on[0]: unknown service instance 'db@seoul': db runs in pangyo, ansan",
        ),
        (
            "  db: {site: pangyo, image: x}\n  api: {site: ansan, image: x, depends_on: [db@pangyo]}",
            "topology.yml: services.api.depends_on[0]: unknown service instance 'db@pangyo': db runs one "
            "instance, called 'db' (a list of sites, `site: [pangyo, ...]`, makes db@<site> instances)",
        ),
        (
            "  db: {site: pangyo, image: x, depends_on: [db]}",
            "topology.yml: services.db.depends_on[0]: db cannot depend on itself",
        ),
        (
            "  api: {site: [pangyo, ansan], image: x, depends_on: [api@ansan]}",
            "topology.yml: services.api.depends_on[0]: api cannot depend on its own instance 'api@ansan'",
        ),
        (
            "  db: {site: pangyo, image: x}\n  api: {site: ansan, image: x, depends_on: [db, db]}",
            "topology.yml: services.api.depends_on[1]: 'db' is listed twice (also at services.api.depends_on[0])",
        ),
        (
            "  db: {site: pangyo, image: x, depends_on: [replica]}\n  replica: {site: ansan, image: x, depends_on: [db]}",
            "topology.yml: services.db.depends_on[0]: dependency cycle: db -> replica -> db",
        ),
        (
            "  web: {site: ansan, image: x, depends_on: [api]}\n"
            "  api: {site: [pangyo, ansan], image: x, depends_on: [auth]}\n"
            "  auth: {site: pangyo, image: x, depends_on: [db]}\n"
            "  db: {site: pangyo, image: x, depends_on: [web]}",
            "topology.yml: services.web.depends_on[0]: dependency cycle: web -> api -> auth -> db -> web",
        ),
        (
            "  db: {site: pangyo, image: x}\n  api: {site: ansan, image: x, depends_on: [db, 3]}",
            "topology.yml: services.api.depends_on[1]: expected a service name (a string), found an integer (3)",
        ),
        # ports, volumes
        (
            "  db: {site: pangyo, image: x, ports: [0]}",
            "topology.yml: services.db.ports[0]: port 0 is out of range (1-65535)",
        ),
        (
            "  db: {site: pangyo, image: x, ports: [65536]}",
            "topology.yml: services.db.ports[0]: port 65536 is out of range (1-65535)",
        ),
        (
            "  db: {site: pangyo, image: x, ports: [http]}",
            "topology.yml: services.db.ports[0]: expected a port number (1-65535), found a string ('http')",
        ),
        (
            "  db: {site: pangyo, image: x, ports: [true]}",
            "topology.yml: services.db.ports[0]: expected a port number (1-65535), found a boolean (true)",
        ),
        (
            "  db: {site: pangyo, image: x, ports: [80.5]}",
            "topology.yml: services.db.ports[0]: expected a port number (1-65535), found a number (80.5)",
        ),
        (
            "  db: {site: pangyo, image: x, ports: [53/udp]}",
            "topology.yml: services.db.ports[0]: only TCP ports are supported, found '53/udp'",
        ),
        (
            "  db: {site: pangyo, image: x, ports: [80, '80/tcp']}",
            "topology.yml: services.db.ports[1]: port 80 is listed twice (also at services.db.ports[0])",
        ),
        (
            "  db: {site: pangyo, image: x, volumes: {data: var/lib/x}}",
            "topology.yml: services.db.volumes.data: mount path 'var/lib/x' is not absolute (it must start with /)",
        ),
        (
            "  db: {site: pangyo, image: x, volumes: {data: /x, logs: /x/}}",
            "topology.yml: services.db.volumes.logs: /x/ is already mounted (at services.db.volumes.data)",
        ),
        (
            "  db: {site: pangyo, image: x, volumes: {data: /}}",
            "topology.yml: services.db.volumes.data: cannot mount a volume over /",
        ),
        (
            "  db: {site: pangyo, image: x, volumes: [data:/x]}",
            "topology.yml: services.db.volumes: expected a mapping of volume name to path, found a list",
        ),
        # health checks
        (
            "  db: {site: pangyo, image: x, healthcheck: {timeout: 3}}",
            "topology.yml: services.db.healthcheck: say how to check: {tcp: PORT}, {cmd: [...]} or "
            "{http: /path, port: PORT}",
        ),
        (
            "  db: {site: pangyo, image: x, healthcheck: {tcp: 1, cmd: [x]}}",
            "topology.yml: services.db.healthcheck: give one of tcp, cmd and http, not tcp and cmd",
        ),
        (
            "  db: {site: pangyo, image: x, healthcheck: {tcp: x}}",
            "topology.yml: services.db.healthcheck.tcp: expected a port number (1-65535), found a string ('x')",
        ),
        (
            "  db: {site: pangyo, image: x, healthcheck: {http: /health}}",
            "topology.yml: services.db.healthcheck: http: needs `port: PORT`, the container port to send the GET to",
        ),
        (
            "  db: {site: pangyo, image: x, healthcheck: {http: health, port: 80}}",
            "topology.yml: services.db.healthcheck.http: expected a URL path starting with / (like /health), found 'health'",
        ),
        (
            "  db: {site: pangyo, image: x, healthcheck: {tcp: 80, port: 80}}",
            "topology.yml: services.db.healthcheck.port: `port` goes with `http`; tcp: says it all",
        ),
        (
            "  db: {site: pangyo, image: x, healthcheck: {cmd: []}}",
            "topology.yml: services.db.healthcheck.cmd: empty command",
        ),
        (
            "  db: {site: pangyo, image: x, healthcheck: {tcp: 80, timeout: -1}}",
            "topology.yml: services.db.healthcheck.timeout: must be more than 0 seconds",
        ),
        (
            "  db: {site: pangyo, image: x, healthcheck: {tcp: 80, interval: soon}}",
            "topology.yml: services.db.healthcheck.interval: expected seconds (a number, or a duration "
            "like 30s or 1m30s), found a string ('soon')",
        ),
        (
            "  db: {site: pangyo, image: x, healthcheck: tcp}",
            "topology.yml: services.db.healthcheck: expected a mapping like {tcp: 5432}, found a string ('tcp')",
        ),
    ],
)
def test_service_errors(services: str, expected: str) -> None:
    if not expected:  # a dotted name that collides with nothing is fine
        parse(BASE + services + "\n")
        return
    message = error(BASE + services + "\n")
    assert matches(message, expected), f"\n{message}\n!=\n{expected}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "sites: [pangyo, ansan, pangyo]\nservices: {db: {site: pangyo, image: x}}",
            "topology.yml: sites[2]: duplicate site 'pangyo' (already at sites[0])",
        ),
        (
            "sites: []\nservices: {db: {site: pangyo, image: x}}",
            "topology.yml: sites: no sites: name at least one data center, e.g. [pangyo, ansan]",
        ),
        (
            "sites: pangyo\nservices: {db: {site: pangyo, image: x}}",
            "topology.yml: sites: expected a list of site names or a mapping of site name to options, "
            "found a string ('pangyo')",
        ),
        (
            "sites: ['pan gyo']\nservices: {db: {site: pangyo, image: x}}",
            "topology.yml: sites[0]: 'pan gyo' is not a valid site name*",
        ),
        (
            "sites: {pangyo: {storage: 8M}}\nservices: {db: {site: pangyo, image: x}}",
            "topology.yml: sites.pangyo.storage: storage must be at least 16 MiB, found '8M'",
        ),
        (
            "sites: {pangyo: {storage: lots}}\nservices: {db: {site: pangyo, image: x}}",
            "topology.yml: sites.pangyo.storage: expected a size (MiB as an integer, or a string like "
            "512M or 1G), found a string ('lots')",
        ),
        (
            "sites: {pangyo: {storge: 1G}}\nservices: {db: {site: pangyo, image: x}}",
            "topology.yml: sites.pangyo: unknown key 'storge' (did you mean 'storage'?); one of: storage",
        ),
        (
            "sites: {pangyo: 1G}\nservices: {db: {site: pangyo, image: x}}",
            "topology.yml: sites.pangyo: expected a mapping of site options, found a string ('1G')",
        ),
        (
            "sites: [a]\nservice: {db: {site: a, image: x}}",
            "topology.yml: unknown key 'service' (did you mean 'services'?); one of: clock, name, services, sites, wan",
        ),
        (
            "sites: [a]",
            "topology.yml: missing key 'services': the services to start, each with a site",
        ),
        (
            "services: {db: {site: a, image: x}}",
            "topology.yml: missing key 'sites': list the sites (data centers), e.g. [pangyo, ansan]",
        ),
        ("sites: [a]\nservices: {}", "topology.yml: services: no services: define at least one"),
        (
            "sites: [a]\nservices: [db]",
            "topology.yml: services: expected a mapping of service name to service, found a list",
        ),
        (
            "sites: [a]\nname: 'my project'\nservices: {db: {site: a, image: x}}",
            "topology.yml: name: 'my project' is not a valid project name*",
        ),
        (
            "sites: [a]\nvolumes: {data: }\nservices: {db: {site: a, image: x}}",
            "topology.yml: volumes: 'volumes' is a docker-compose key; this file is read as a "
            "pytest-dcfire topology (it has top-level `sites`)*",
        ),
    ],
)
def test_document_errors(text: str, expected: str) -> None:
    message = error(text)
    assert matches(message, expected), f"\n{message}\n!=\n{expected}"


def test_errors_carry_source_and_path() -> None:
    with pytest.raises(TopologyError) as info:
        parse("sites: [a]\nservices: {db: {site: b, image: x}}")
    assert (info.value.source, info.value.path) == ("topology.yml", "services.db.site")
    assert info.value.detail == "unknown site 'b'; one of: a"
