"""Tracing a task: the unmodified SDK runs a task on OUR endpoint (a throwaway user, our
gc-service with an admin token); ``globus-compute-endpoint trace TASK_ID`` then shows every
stage -- submitted (service), received, started, finished, result sent (user endpoint log),
result received (service) -- in order, and the service's own log has a line with the task id
for each of its stages.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import requests

_spec = importlib.util.spec_from_file_location(
    "gcrs_opsite", Path(__file__).resolve().parent / "opsite.py"
)
opsite = sys.modules.get("gcrs_opsite")
if opsite is None:
    opsite = importlib.util.module_from_spec(_spec)
    sys.modules["gcrs_opsite"] = opsite
    _spec.loader.exec_module(opsite)
svc = opsite.svc

pytestmark = pytest.mark.timeout(300)

ADMIN_TOKEN = "trace-admin-token-0123456789"


@pytest.fixture(scope="module")
def site(port_5000):
    with opsite.running_site("trace", ours=True, env={"GCRS_ADMIN_TOKEN": ADMIN_TOKEN}) as s:
        yield s


def trace(site, task_id: str, admin: bool = True, client: bool = True):
    env = {
        "HOME": "/root",
        "PATH": "/usr/bin:/bin",
        "GLOBUS_SDK_ENVIRONMENT": "local",
        "GLOBUS_SDK_SERVICE_URL_AUTH": "http://localhost:5000/auth/",
        "GLOBUS_COMPUTE_USER_DIR": str(site.endpoint.ep_dir.parent),
    }
    if admin:
        env["GCRS_ADMIN_TOKEN"] = ADMIN_TOKEN
    if client:
        env["GLOBUS_COMPUTE_CLIENT_ID"] = site.client["client_id"]
        env["GLOBUS_COMPUTE_CLIENT_SECRET"] = site.client["client_secret"]
    return subprocess.run(
        [svc.endpoint_bin(), "trace", task_id], env=env, capture_output=True, text=True, timeout=60
    )


LINE = re.compile(r"^  (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6})  (\S+)\s+(.*)$")


def stages(stdout: str) -> list[tuple[datetime, str, str]]:
    out = []
    for line in stdout.splitlines():
        m = LINE.match(line)
        if m:
            out.append((datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S.%f"), m[2], m[3]))
    return out


def first(events, component_prefix: str, text: str):
    for at, comp, what in events:
        if comp.startswith(component_prefix) and text in what:
            return at
    raise AssertionError(f"no {component_prefix} stage {text!r} in {events}")


def test_trace_shows_every_stage_in_order(site):
    from globus_compute_sdk import Executor

    with Executor(endpoint_id=site.endpoint_id) as ex:
        fut = ex.submit(opsite.FUNCS["double"], 21)
        assert fut.result(timeout=90) == 42
        task_id = fut.task_id

    # The service marks the result forwarded once the broker confirmed the forward, which
    # can be a moment after the SDK already has it.
    deadline = time.monotonic() + 20
    while True:
        r = trace(site, task_id)
        assert r.returncode == 0, r.stderr
        if "result forwarded to the submitter: yes" in r.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert r.stdout.startswith(f"Task {task_id}\n"), r.stdout
    assert r.stdout.rstrip().endswith(
        "service: status success, result forwarded to the submitter: yes"
    ), r.stdout
    ev = stages(r.stdout)
    submitted = first(ev, "service", "Task submitted")
    received = first(ev, "uep.", "Task received")
    started = first(ev, "uep.", "Task started")
    finished = first(ev, "uep.", "Task finished")
    sent = first(ev, "uep.", "Result sent")
    recorded = first(ev, "service", "Result received from the endpoint")
    assert submitted <= received <= started <= finished <= sent, r.stdout
    assert finished <= recorded, r.stdout
    # Printed in time order.
    assert [e[0] for e in ev] == sorted(e[0] for e in ev)
    # Every endpoint line of the trace names the task.
    for line in r.stdout.splitlines():
        if LINE.match(line) and " uep." in line:
            assert f"task_id={task_id}" in line, line

    # The service's log: one line per stage, each with the task id.
    log = re.sub(r"\x1b\[[0-9;]*m", "", site.service.log.read_text())
    for stage in (
        "Task submitted",
        "Task queued for the user endpoint",
        "Result received from the endpoint",
        "Result forwarded to the SDK",
    ):
        assert re.search(rf"{stage}.*task_id={task_id}|task_id={task_id}.*{stage}", log), stage

    # Without the admin token: the submitter's own view (status, result time).
    r = trace(site, task_id, admin=False)
    assert r.returncode == 0, r.stderr
    assert "service: status success (set GCRS_ADMIN_TOKEN for the submit time)" in r.stdout
    assert "Task received" in r.stdout and "Task submitted" not in r.stdout


def test_admin_route_and_errors(site):
    unknown = "00000000-0000-4000-8000-000000000000"
    url = f"{svc.BASE}/admin/tasks/{unknown}"
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
    r = requests.get(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
    assert r.status_code == 404

    r = trace(site, unknown)
    assert r.returncode == 1
    assert "Error: No trace of task 00000000-0000-4000-8000-000000000000" in r.stderr
    r = trace(site, "not-a-uuid")
    assert r.returncode == 2
    assert "Invalid value for 'TASK_ID'" in r.stderr
