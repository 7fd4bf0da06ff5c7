"""Fixtures shared by every Python test directory.

The SDK's ``local`` environment and the endpoint's ``local_compute_services`` both mean
http://localhost:5000, so only one service may run there at a time. One session-wide lock
(a ``flock`` on /tmp/gcrs-port-5000.lock, shared with ``scripts/demo.sh``) keeps concurrent
runs apart. It must be defined once per session: a second ``flock`` from the same process on
another descriptor would wait for the first forever.
"""

from __future__ import annotations

import fcntl
import socket
import time

import pytest


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def port_5000():
    """Exclusive use of 127.0.0.1:5000 for this test session."""
    with open("/tmp/gcrs-port-5000.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        deadline = time.monotonic() + 60
        while _port_open(5000):
            if time.monotonic() > deadline:
                raise AssertionError("port 5000 is still taken by something outside the tests")
            time.sleep(0.2)
        yield
        fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(autouse=True)
def fresh_sdk_task_group():
    """The SDK remembers the first Executor's task group in a class attribute and every later
    Executor of the process submits into it. Tests run as several different clients, and a
    task group belongs to the client that made it (the service answers 403
    TASK_GROUP_ACCESS_FORBIDDEN to anyone else), so each test starts without one."""
    try:
        from globus_compute_sdk import Executor
    except ImportError:
        yield
        return
    Executor._default_task_group_id = None
    yield
