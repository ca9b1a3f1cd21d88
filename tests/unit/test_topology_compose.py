"""The docker-compose subset: the same model as our format, and clear refusals for the rest."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from pytest_dcfire.errors import TopologyError
from pytest_dcfire.topology.load import load_topology, parse_topology
from pytest_dcfire.topology.model import Build, HealthCheck, Service, Site, Topology, Volume


def matches(message: str, pattern: str) -> bool:
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), message) is not None


def parse(text: str, base: Path | None = None, source: str = "compose.yml") -> Topology:
    return parse_topology(textwrap.dedent(text), source, base)


def error(text: str, base: Path | None = None, source: str = "compose.yml") -> str:
    with pytest.raises(TopologyError) as info:
        parse(text, base, source)
    return str(info.value)


COMPOSE = """
name: shop
x-dcfire:
  sites: {pangyo: {storage: 1G}}
x-common: &common
  restart: unless-stopped
  environment:
    TZ: Asia/Seoul
services:
  db:
    <<: *common
    build:
      context: ./db
      args: [PG=16]
      cache_from: [db:cache]
    image: shop/db:latest
    container_name: shop-db
    ports: ["127.0.0.1:15432:5432/tcp"]
    volumes:
      - pgdata:/var/lib/postgresql/data
      - type: volume
        source: wal
        target: /wal
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U $$POSTGRES_USER"]
      interval: 10s
      timeout: 5s
      retries: 5
      start_period: 1m
    labels:
      dcfire.site: pangyo
      com.example.team: storage
  api:
    image: shop/api:1.2
    command: uvicorn app:main --port 8080
    entrypoint: ["/entry.sh"]
    environment:
      - DB=db
      - WORKERS=4
    ports: [8080, "9000:9000", {target: 9100, published: 19100}, "8000-8002:8000-8002"]
    depends_on:
      db: {condition: service_healthy, restart: true}
    healthcheck:
      test: ["CMD", "curl", "-f", "http://localhost:8080/health"]
      start_interval: 1s
    x-dcfire: {site: [pangyo, ansan]}
  worker:
    image: shop/worker
    depends_on: [api]
    healthcheck: {test: "test -f /tmp/ready", interval: 100ms, retries: 3}
    labels: ["dcfire.site=ansan"]
volumes:
  pgdata:
  wal: {driver: local, labels: {a: b}}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "Dockerfile").write_text("FROM debian:bookworm-slim\n")
    return tmp_path


def test_a_compose_file_loads_into_the_model(project: Path) -> None:
    path = project / "docker-compose.yml"
    path.write_text(COMPOSE)
    topology = load_topology(path)
    assert topology.name == "shop"
    assert topology.sites == (Site("pangyo", 1024), Site("ansan"))
    db, api_pangyo, api_ansan, worker = topology.services
    assert db == Service(
        name="db",
        base="db",
        site="pangyo",
        build=Build(str((project / "db").resolve()), None, (("PG", "16"),)),
        environment=(("TZ", "Asia/Seoul"),),
        ports=(5432,),
        volumes=(Volume("pgdata", "/var/lib/postgresql/data"), Volume("wal", "/wal")),
        healthcheck=HealthCheck(
            "cmd",
            cmd=("/bin/sh", "-c", "pg_isready -U $POSTGRES_USER"),
            budget=60 + 10 * 5,
            interval=0.2,
        ),
    )
    assert (api_pangyo.name, api_pangyo.site, api_ansan.name, api_ansan.site) == (
        "api@pangyo",
        "pangyo",
        "api@ansan",
        "ansan",
    )
    assert api_ansan == Service(
        name="api@ansan",
        base="api",
        site="ansan",
        image="shop/api:1.2",
        command=("uvicorn", "app:main", "--port", "8080"),
        entrypoint=("/entry.sh",),
        environment=(("DB", "db"), ("WORKERS", "4")),
        ports=(8080, 9000, 9100, 8000, 8001, 8002),
        depends_on=("db",),
        healthcheck=HealthCheck(
            "cmd", cmd=("curl", "-f", "http://localhost:8080/health"), budget=90.0, interval=1.0
        ),
    )
    assert worker.site == "ansan" and worker.depends_on == ("api",)
    assert worker.healthcheck == HealthCheck(
        "cmd", cmd=("/bin/sh", "-c", "test -f /tmp/ready"), budget=0.3, interval=0.1
    )


@pytest.mark.parametrize("healthcheck", ["{disable: true, test: [CMD, x]}", "{test: [NONE]}"])
def test_disabled_health_checks(healthcheck: str) -> None:
    topology = parse(
        f"services:\n  s: {{image: x, labels: {{dcfire.site: a}}, healthcheck: {healthcheck}}}\n"
    )
    assert topology.service("s").healthcheck is None


def test_compose_is_recognised_by_content_whatever_the_file_name() -> None:
    text = "services:\n  s: {image: x, labels: [dcfire.site=a]}\n"
    assert parse(text, source="topology.yml").sites == (Site("a"),)
    # a file called compose.yml is compose even with our keys: they get a compose-minded error
    assert error("sites: [a]\nservices: {s: {image: x, site: a}}") == (
        "compose.yml: 2 mistakes:\n"
        "  sites: not a compose key: in a compose file, list sites in `x-dcfire: {sites: ...}`\n"
        "  services.s: unknown key 'site'; supported: build, command, depends_on, entrypoint, "
        "environment, healthcheck, image, labels, ports, volumes, x-dcfire"
    )


def test_label_list_gives_one_instance_per_site() -> None:
    topology = parse("services:\n  s: {image: x, labels: {dcfire.site: 'b, a'}}\n")
    assert [(s.name, s.site) for s in topology.services] == [("s@b", "b"), ("s@a", "a")]
    assert topology.site_names == ("b", "a")


def test_declared_sites_come_first_and_keep_options() -> None:
    topology = parse(
        """
        x-dcfire: {sites: [ansan, gasan]}
        services:
          s: {image: x, labels: {dcfire.site: pangyo}}
          t: {image: x, labels: {dcfire.site: ansan}}
        """
    )
    assert topology.site_names == ("ansan", "gasan", "pangyo")


def test_image_with_build_builds(project: Path) -> None:
    topology = parse(
        "services:\n  s: {image: me/s:dev, build: ./db, labels: {dcfire.site: a}}\n", project
    )
    assert topology.service("s").image is None
    assert topology.service("s").build == Build(str((project / "db").resolve()))


def test_two_publications_of_one_container_port_keep_it_once() -> None:
    topology = parse(
        "services:\n  s: {image: x, ports: ['80:80', '8080:80'], labels: [dcfire.site=a]}\n"
    )
    assert topology.service("s").ports == (80,)


S = "services:\n  s:\n    image: x\n    labels: {dcfire.site: a}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "services:\n  db: {image: x}\n",
            "compose.yml: services.db: no site for service 'db': add a label `dcfire.site: <site>` "
            "(comma-separated for one instance per site), or a key `x-dcfire: {site: <site>}` (a "
            "list for one instance per site)",
        ),
        (
            "services:\n  db: {image: x, labels: {dcfire.site: a}, x-dcfire: {site: a}}\n",
            "compose.yml: services.db: the site is given twice (dcfire.site label and x-dcfire.site): keep one",
        ),
        (
            "services:\n  db: {image: x, labels: {dcfire.sites: a}}\n",
            "compose.yml: services.db.labels['dcfire.sites']: unknown pytest-dcfire label "
            "'dcfire.sites' (did you mean 'dcfire.site'?); the only one is dcfire.site",
        ),
        (
            "services:\n  db: {image: x, labels: {dcfire.site: 'a,,b'}}\n",
            "compose.yml: services.db.labels['dcfire.site']: '' is not a valid site name*",
        ),
        (
            "services:\n  db: {image: x, x-dcfire: {sites: a}}\n",
            "compose.yml: services.db.x-dcfire: unknown key 'sites' (did you mean 'site'?); one of: clock, site",
        ),
        (
            S + "    networks: [front]\n",
            "compose.yml: services.s.networks: not supported by pytest-dcfire: every service joins the "
            "one network of the session and reaches the others by service name; a fire cuts sites, "
            "not networks",
        ),
        (
            S + "    deploy: {replicas: 2}\n",
            "compose.yml: services.s.deploy: not supported by pytest-dcfire: instances come from "
            "sites: give the dcfire.site label a list of sites for one instance per site",
        ),
        (
            S + "    user: postgres\n",
            "compose.yml: services.s.user: not supported by pytest-dcfire: remove it, or move it under an x- key",
        ),
        (
            S + "    imgae: y\n",
            "compose.yml: services.s: unknown key 'imgae' (did you mean 'image'?); supported: build, "
            "command, depends_on, entrypoint, environment, healthcheck, image, labels, ports, "
            "volumes, x-dcfire",
        ),
        (
            S + "    volumes: ['./data:/data']\n",
            "compose.yml: services.s.volumes[0]: bind mounts ('./data') are not supported: only named "
            "volumes are supported, because they are kept on the site's storage (which a fire "
            "freezes); declare a named volume instead, e.g. data:/var/lib/x",
        ),
        (
            S + "    volumes: ['/var/run/docker.sock:/var/run/docker.sock']\n",
            "compose.yml: services.s.volumes[0]: bind mounts ('/var/run/docker.sock') are not supported*",
        ),
        (
            S + "    volumes: [/data]\n",
            "compose.yml: services.s.volumes[0]: anonymous volumes are not supported: only named "
            "volumes are supported*; name it, e.g. data:/data",
        ),
        (
            S + "    volumes: [{type: bind, source: ., target: /x}]\n",
            "compose.yml: services.s.volumes[0].type: 'bind' mounts are not supported*",
        ),
        (
            S + "    volumes: [{type: volume, target: /x}]\n",
            "compose.yml: services.s.volumes[0]: anonymous volumes are not supported*",
        ),
        (
            S + "    volumes: ['data:/x']\n",
            "compose.yml: services.s.volumes[0]: volume 'data' is not declared in the top-level "
            "volumes section; none are defined",
        ),
        (
            S + "    volumes: ['dta:/x']\nvolumes: {data: }\n",
            "compose.yml: services.s.volumes[0]: volume 'dta' is not declared in the top-level "
            "volumes section (did you mean 'data'?); one of: data",
        ),
        (
            S + "    volumes: ['data:/x:ro']\nvolumes: {data: }\n",
            "compose.yml: services.s.volumes[0]: mount options 'ro' are not supported*",
        ),
        (
            S + "    volumes: ['data:x']\nvolumes: {data: }\n",
            "compose.yml: services.s.volumes[0]: mount path 'x' is not absolute (it must start with /)",
        ),
        (
            S + "volumes: {data: {external: true}}\n",
            "compose.yml: volumes.data.external: external volumes are not supported: pytest-dcfire "
            "keeps every named volume on its site's storage pool*",
        ),
        (
            S + "volumes: {data: {driver: nfs}}\n",
            "compose.yml: volumes.data.driver: volume drivers are not supported*",
        ),
        (
            S + "    ports: ['53:53/udp']\n",
            "compose.yml: services.s.ports[0]: only TCP ports are supported, found '53:53/udp'",
        ),
        (
            S + "    ports: ['8080:http']\n",
            "compose.yml: services.s.ports[0]: expected a port like 80, 8080:80 or "
            "127.0.0.1:8080:80/tcp, found a string ('8080:http')",
        ),
        (
            S + "    ports: ['80:70000']\n",
            "compose.yml: services.s.ports[0]: port 70000 is out of range (1-65535)",
        ),
        (
            S + "    ports: [{published: 80}]\n",
            "compose.yml: services.s.ports[0]: missing key 'target': the container port",
        ),
        (
            S
            + "    depends_on: {db: {condition: service_completed_successfully}}\n  db: {image: x, labels: [dcfire.site=a]}\n",
            "compose.yml: services.s.depends_on.db.condition: service_completed_successfully is not supported*",
        ),
        (
            S
            + "    depends_on: {db: {condition: service_healty}}\n  db: {image: x, labels: [dcfire.site=a]}\n",
            "compose.yml: services.s.depends_on.db.condition: unknown condition a string "
            "('service_healty') (did you mean 'service_healthy'?); one of: service_healthy, service_started",
        ),
        (
            S
            + "    depends_on: {dbb: {condition: service_healthy}}\n  db: {image: x, labels: [dcfire.site=a]}\n",
            "compose.yml: services.s.depends_on.dbb: unknown service 'dbb' (did you mean 'db'?); one of: db",
        ),
        (
            S
            + "    depends_on: [db]\n  db: {image: x, labels: [dcfire.site=a], depends_on: [s]}\n",
            "compose.yml: services.s.depends_on[0]: dependency cycle: s -> db -> s",
        ),
        (
            S + "    healthcheck: {interval: 5s}\n",
            "compose.yml: services.s.healthcheck: missing key 'test': pytest-dcfire does not read an "
            "image's own HEALTHCHECK*",
        ),
        (
            S + "    healthcheck: {test: [curl, x]}\n",
            'compose.yml: services.s.healthcheck.test: expected ["CMD", program, args...], '
            '["CMD-SHELL", "command line"] or ["NONE"]',
        ),
        (
            S + "    healthcheck: {test: [CMD, x], interval: 1x}\n",
            "compose.yml: services.s.healthcheck.interval: expected seconds (a number, or a duration "
            "like 30s or 1m30s), found a string ('1x')",
        ),
        (
            S + "    healthcheck: {test: [CMD, x], retries: 0}\n",
            "compose.yml: services.s.healthcheck.retries: expected a number of attempts (1 or more), "
            "found an integer (0)",
        ),
        (
            S + "    image: ${REGISTRY}/x\n",
            "*duplicate key 'image'*",
        ),
        (
            "services:\n  s:\n    image: ${REGISTRY:-local}/x\n    labels: {dcfire.site: a}\n",
            "compose.yml: services.s.image: variable interpolation ($VAR, ${VAR}) is not supported by "
            "pytest-dcfire, so that runs do not depend on the shell's environment: write the value "
            "out (or $$ for a literal $)",
        ),
        (
            S + "    environment: [HOME]\n",
            "compose.yml: services.s.environment[0]: HOME has no value: pytest-dcfire does not pass "
            "the host's environment through*",
        ),
        (
            S + "networks: {default: {}}\n",
            "compose.yml: networks: not supported by pytest-dcfire: every service joins the one "
            "network of the session*",
        ),
        (
            S + "servics: {}\n",
            "compose.yml: unknown key 'servics' (did you mean 'services'?); one of: name, services, "
            "version, volumes",
        ),
        ("version: '3'\n", "compose.yml: missing key 'services'*"),
        (
            S + "    build: {context: ., target: prod}\n",
            "compose.yml: services.s.build.target: build option 'target' is not supported by "
            "pytest-dcfire; supported: args, context, dockerfile",
        ),
        (
            "services:\n  s: {labels: {dcfire.site: a}}\n",
            "compose.yml: services.s: no image: give `image:`*",
        ),
    ],
)
def test_compose_errors(text: str, expected: str) -> None:
    message = error(text)
    assert matches(message, expected), f"\n{message}\n!=\n{expected}"


def test_ignored_keys_are_ignored() -> None:
    topology = parse(
        S
        + "    restart: always\n    container_name: x\n    expose: [80]\n    hostname: h\n"
        + "    stop_grace_period: 1s\n    logging: {driver: none}\n    x-anything: {a: 1}\n"
        + "version: '3.9'\n"
    )
    assert topology.service("s") == Service(name="s", base="s", site="a", image="x")


FAILOVER_COMPOSE = """
services:
  redis:
    image: x
    labels: {dcfire.site: north}
  db:
    image: x
    labels: {dcfire.site: "north,south"}
  api:
    image: x
    labels: {dcfire.site: "north,south"}
    depends_on:
      redis: {condition: service_started, x-dcfire: {failover: true}}
      db: {condition: service_healthy, x-dcfire: {site: same}}
"""


def test_compose_dependencies_declare_failover_and_same_site_under_x_dcfire() -> None:
    topology = parse(FAILOVER_COMPOSE)
    api = topology.service("api@south")
    assert api.depends_on == ("redis", "db@south")
    assert api.failover == ("redis",)
    assert topology.service("api@north").depends_on == ("redis", "db@north")


def test_compose_dependency_extension_is_validated() -> None:
    assert error(FAILOVER_COMPOSE.replace("failover: true", "failover: 1")) == (
        "compose.yml: services.api.depends_on.redis.x-dcfire.failover: expected true or false, "
        "found an integer (1) (true: needed to start, not to keep running; the dependent fails "
        "over when it is lost)"
    )
    assert error(FAILOVER_COMPOSE.replace("{site: same}", "{site: same, condition: x}")) == (
        "compose.yml: services.api.depends_on.db.x-dcfire: unknown key 'condition'; one of: "
        "failover, site"
    )
