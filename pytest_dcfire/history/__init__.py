"""Operation histories: record what clients saw during a fire, then check it (lost writes,
availability, linearizability) with pure functions that need no Docker."""

from __future__ import annotations

from pytest_dcfire.history.checkers import (
    Availability,
    LostWrites,
    Outage,
    availability,
    lost_writes,
)
from pytest_dcfire.history.counters import CounterCheck, SetCheck, check_counter, check_set
from pytest_dcfire.history.formats import load, load_edn_ops, load_jepsen_log
from pytest_dcfire.history.history import History
from pytest_dcfire.history.isolation import (
    Anomaly,
    Isolation,
    IsolationError,
    check_isolation,
)
from pytest_dcfire.history.linearizability import Linearizability, LinearizedOp, check
from pytest_dcfire.history.model import BaseHistory, HistoryError, Mark, Op, OpType, Value
from pytest_dcfire.history.models import ANY, Counter, KeyValue, Model, Register
from pytest_dcfire.history.workload import (
    Fail,
    Indeterminate,
    Workload,
    WorkloadError,
    declare,
    transaction,
)

__all__ = [
    "ANY",
    "Anomaly",
    "Availability",
    "BaseHistory",
    "Counter",
    "CounterCheck",
    "Fail",
    "History",
    "HistoryError",
    "Indeterminate",
    "Isolation",
    "IsolationError",
    "KeyValue",
    "Linearizability",
    "LinearizedOp",
    "LostWrites",
    "Mark",
    "Model",
    "Op",
    "OpType",
    "Outage",
    "Register",
    "SetCheck",
    "Value",
    "Workload",
    "WorkloadError",
    "availability",
    "check",
    "check_counter",
    "check_isolation",
    "check_set",
    "declare",
    "load",
    "load_edn_ops",
    "load_jepsen_log",
    "lost_writes",
    "transaction",
]
