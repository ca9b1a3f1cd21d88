"""Property tests: no input escapes as anything but TopologyError; valid topologies plan soundly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_dcfire.errors import TopologyError
from pytest_dcfire.topology import compose, load
from pytest_dcfire.topology.load import parse_topology, topology_from_document
from pytest_dcfire.topology.model import Topology
from pytest_dcfire.topology.plan import blast_radius, render_plan, single_homed, waves

#: Relative build contexts resolve here; it has no `db/` or `api/`, which is the point.
BASE = Path(__file__).parent

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VOCABULARY = sorted(
    set(load.TOP_KEYS)
    | set(load.SERVICE_KEYS)
    | set(load.HEALTH_KEYS)
    | set(compose.SERVICE_KEYS)
    | set(compose.HEALTH_KEYS)
    | set(compose.PORT_KEYS)
    | set(compose.VOLUME_MOUNT_KEYS)
    | {"storage", "context", "dockerfile", "args", "condition", "dcfire.site", "x-dcfire"}
    | {"version", "networks", "restart", "deploy", "driver", "external", "sites"}
)
NAMES = ["a", "b", "db", "api", "pangyo", "ansan", "db@a", "api@b", "s0", "-x", "a b", ""]
SAMPLES = [
    "/data",
    "./db",
    ".",
    "5432",
    "80:80",
    "127.0.0.1:8080:80/tcp",
    "8000-8002",
    "53/udp",
    "1m30s",
    "512M",
    "CMD",
    "CMD-SHELL",
    "NONE",
    "${X}",
    "$$",
    "a,b",
    "data:/x",
    "./x:/y",
    "A=1",
    "service_healthy",
    "volume",
    "bind",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
    st.sampled_from(NAMES + SAMPLES),
)
keys = st.one_of(st.sampled_from(VOCABULARY + NAMES), st.text(max_size=6), st.integers(0, 3))
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)
    ),
    max_leaves=25,
)
service_keys = st.sampled_from(sorted(set(load.SERVICE_KEYS) | set(compose.SERVICE_KEYS)))
services = st.dictionaries(
    st.sampled_from(NAMES),
    st.one_of(values, st.dictionaries(st.one_of(service_keys, keys), values, max_size=7)),
    max_size=4,
)
documents = st.one_of(
    values,
    st.fixed_dictionaries(
        {"services": services},
        optional={
            "sites": st.one_of(st.lists(st.sampled_from(NAMES), max_size=3), values),
            "x-dcfire": values,
            "volumes": values,
            "name": scalars,
        },
    ),
)


def _only_topology_errors(text_or_doc: Any, source: str) -> None:
    try:
        if isinstance(text_or_doc, str):
            parse_topology(text_or_doc, source, BASE)
        else:
            topology_from_document(text_or_doc, source, BASE)
    except TopologyError as exc:
        assert str(exc).startswith(source)


@FUZZ
@given(doc=documents, source=st.sampled_from(["topology.yml", "compose.yml"]))
def test_malformed_documents_raise_only_topology_errors(doc: Any, source: str) -> None:
    _only_topology_errors(yaml.safe_dump(doc), source)
    _only_topology_errors(doc, source)


@FUZZ
@given(text=st.text(max_size=200))
def test_random_text_raises_only_topology_errors(text: str) -> None:
    _only_topology_errors(text, "topology.yml")


VALID = """\
sites: {pangyo: {storage: 512M}, ansan: {}}
x-base: &base {image: "img:1", environment: [A=1]}
services:
  db: {<<: *base, site: pangyo, ports: [5432], volumes: {data: /d}, healthcheck: {tcp: 5432}}
  api: {<<: *base, site: [pangyo, ansan], depends_on: [db], healthcheck: {http: /h, port: 80}}
  web: {image: w, site: ansan, command: "run --fast", depends_on: [api@ansan]}
"""


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, len(VALID)), st.text(max_size=3)), max_size=4))
def test_mangled_files_raise_only_topology_errors(edits: list[tuple[int, str]]) -> None:
    text = VALID
    for position, insert in edits:
        cut = 1 if position % 2 else 0
        text = text[:position] + insert + text[position + cut :]
    _only_topology_errors(text, "topology.yml")


SITES = ["pangyo", "ansan", "gasan", "daejeon"]


@st.composite
def valid_documents(draw: st.DrawFn) -> dict[str, Any]:
    """Our format; dependencies only point at earlier services, so there is no cycle."""
    sites = draw(st.lists(st.sampled_from(SITES), min_size=1, max_size=4, unique=True))
    count = draw(st.integers(1, 8))
    services: dict[str, dict[str, Any]] = {}
    instances: dict[str, list[str]] = {}
    for index in range(count):
        name = f"s{index}"
        if draw(st.booleans()):
            site: Any = draw(st.sampled_from(sites))
            instances[name] = [name]
        else:
            site = draw(st.lists(st.sampled_from(sites), min_size=1, unique=True))
            instances[name] = [f"{name}@{s}" for s in site]
        targets = (
            draw(st.lists(st.integers(0, index - 1), unique=True, max_size=3)) if index else []
        )
        refs = [draw(st.sampled_from([f"s{t}", *instances[f"s{t}"]])) for t in targets]
        services[name] = {"site": site, "image": "img", "depends_on": refs}
    order = draw(st.permutations(list(services)))
    return {"sites": sites, "services": {name: services[name] for name in order}}


def _check_plan(topology: Topology) -> None:
    plan = waves(topology)
    wave_of = {service.name: number for number, wave in enumerate(plan) for service in wave}
    assert sorted(wave_of) == sorted(service.name for service in topology.services)
    assert sum(len(wave) for wave in plan) == len(topology.services)
    for service in topology.services:
        needs = [i.name for ref in service.depends_on for i in topology.instances_of(ref)]
        assert all(wave_of[need] < wave_of[service.name] for need in needs)
        if wave_of[service.name] > 0:  # as early as possible
            assert any(wave_of[need] == wave_of[service.name] - 1 for need in needs)
    for site in topology.site_names:
        radius = blast_radius(topology, site)
        lost = set(radius.affected)
        assert set(radius.dark_names) == {s.name for s in topology.in_site(site)}
        assert not set(radius.dark_names) & set(radius.stranded_names)
        assert {s.name for s in radius.survivors} == {s.name for s in topology} - lost
        for entry in radius.stranded:
            assert entry.service.site != site
            assert all(i.name in lost for i in topology.instances_of(entry.dependency))
            assert all(i.site == site for i in topology.instances_of(entry.root))
        for survivor in radius.survivors:
            for ref in survivor.depends_on:
                assert any(i.name not in lost for i in topology.instances_of(ref))
    for home in single_homed(topology):
        assert all(service.site != home.site for service in home.needed_by)
    text = render_plan(topology)
    assert all(f"if {site} burns:" in text for site in topology.site_names)


@settings(max_examples=150, deadline=None)
@given(doc=valid_documents())
def test_valid_topologies_load_and_plan_consistently(doc: dict[str, Any]) -> None:
    topology = parse_topology(yaml.safe_dump(doc, sort_keys=False), "topology.yml")
    assert topology.site_names == tuple(doc["sites"])
    assert [s.base for s in topology.services] == [
        name
        for name, svc in doc["services"].items()
        for _ in (svc["site"] if isinstance(svc["site"], list) else [0])
    ]
    _check_plan(topology)

    # The same system as a compose file gives the same model.
    as_compose = {
        "x-dcfire": {"sites": doc["sites"]},
        "services": {
            name: {
                "image": svc["image"],
                "depends_on": svc["depends_on"],
                "x-dcfire": {"site": svc["site"]},
            }
            for name, svc in doc["services"].items()
        },
    }
    twin = parse_topology(yaml.safe_dump(as_compose, sort_keys=False), "compose.yml")
    assert (twin.sites, twin.services) == (topology.sites, topology.services)
