"""Agreement with real histories whose verdicts someone else established: the 102 Jepsen etcd
runs and 4 key-value runs of the shared data set (see its README). Every one must agree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_dcfire.history import check, load
from pytest_dcfire.history.formats import shared_histories

ROOT = Path(os.environ.get("DCFIRE_HISTORIES", "/work/shared/data/histories"))
CASES = list(shared_histories(ROOT)) if ROOT.is_dir() else []


def test_the_shared_data_set_is_all_there() -> None:
    if not ROOT.is_dir():
        pytest.skip(f"no shared histories at {ROOT} (set DCFIRE_HISTORIES)")
    assert len(CASES) == 106
    verdicts = [verdict for _, model, verdict in CASES if model == "register"]
    assert (verdicts.count(True), verdicts.count(False)) == (23, 79)


@pytest.mark.parametrize(
    ("path", "model", "linearizable"), CASES, ids=[path.name for path, _, _ in CASES]
)
def test_agrees_with_the_recorded_verdict(path: Path, model: str, linearizable: bool) -> None:
    # Registers start absent (nil); a missing key of the kv runs reads as "".
    result = check(load(path), model, initial="" if model == "kv" else None, timeout=30)
    assert result.valid is linearizable, str(result)
    if not linearizable:
        assert result.culprit is not None and result.counterexample, str(result)
