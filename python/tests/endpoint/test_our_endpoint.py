"""OUR ``globus-compute-endpoint`` (``GCRS_ENDPOINT_BIN``, default
``$CARGO_TARGET_DIR/debug/globus-compute-endpoint``) end to end: configured and started as a
throwaway unprivileged user against our gc-service (SQLite, a fresh RabbitMQ vhost), with a
ThreadPoolEngine user endpoint template; the unmodified SDK's Executor submits functions and
gets their results back; ``stop`` ends the core endpoint.

The service helpers are those of ``tests/service/conftest.py``; the port-5000 lock is the
session fixture of ``tests/conftest.py``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "gcrs_service_conftest", Path(__file__).resolve().parents[1] / "service" / "conftest.py"
)
svc = importlib.util.module_from_spec(_spec)
sys.modules["gcrs_service_conftest"] = svc
_spec.loader.exec_module(svc)

pytestmark = pytest.mark.timeout(180)

# Functions defined in a "__main__" namespace so dill ships them by value.
_FUNCS = {"__name__": "__main__"}
exec(
    """
def double(x):
    return x * 2

def boom(x):
    raise ValueError(f"bad value {x}")
""",
    _FUNCS,
)
double = _FUNCS["double"]
boom = _FUNCS["boom"]


endpoint_bin = svc.endpoint_bin
OurEndpoint = svc.OurEndpoint


@pytest.fixture(scope="module")
def our_site(port_5000):
    workdir = Path(tempfile.mkdtemp(prefix="gcrs-our-ep-tests-"))
    vhost = svc.Vhost()
    db = svc.Database("sqlite", workdir)
    service = svc.Service(db, vhost, workdir)
    endpoint = None
    saved = dict(os.environ)
    ok = False
    try:
        service.start()
        client = service.create_client("our-endpoint")
        os.environ.update(svc._sdk_env(client, workdir / "sdk"))
        from globus_compute_sdk import Executor

        Executor._default_task_group_id = None
        endpoint = OurEndpoint(client)
        endpoint.start(timeout=30)
        yield endpoint
        ok = True
    finally:
        if endpoint:
            endpoint.cleanup(keep_logs_in=None if ok else workdir)
        service.stop()
        os.environ.clear()
        os.environ.update(saved)
        db.drop()
        vhost.delete()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"\nour-endpoint test logs kept in {workdir}", file=sys.stderr)


def test_results_and_exception_reach_the_sdk(our_site):
    from globus_compute_sdk import Executor
    from globus_compute_sdk.errors import TaskExecutionFailed

    pid = int((our_site.ep_dir / "daemon.pid").read_text())
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[-3:-1] == [b"start", our_site.NAME.encode()]
    with Executor(endpoint_id=our_site.endpoint_id) as ex:
        assert ex.submit(double, 21).result(timeout=60) == 42
        futures = [ex.submit(double, i) for i in range(20)]
        assert [f.result(timeout=60) for f in futures] == [2 * i for i in range(20)]
        assert ex.submit(double, "ab").result(timeout=60) == "abab"
        fut = ex.submit(boom, 3)
        with pytest.raises(TaskExecutionFailed) as info:
            fut.result(timeout=60)
    assert "ValueError: bad value 3" in str(info.value)


def test_second_start_refuses_while_running(our_site):
    r = our_site.run_cli("start", our_site.NAME)
    assert r.returncode == 73, (r.stdout, r.stderr)
    assert "Another instance of this endpoint is running." in r.stderr
    assert our_site.proc.poll() is None
    assert (our_site.ep_dir / "daemon.pid").exists()


def test_stop_ends_the_endpoint(our_site):
    r = our_site.run_cli("stop", our_site.NAME)
    assert r.returncode == 0, r.stderr
    assert f"Endpoint <{our_site.NAME}> is now stopped" in r.stderr
    assert our_site.proc.wait(15) == 0
    assert not (our_site.ep_dir / "daemon.pid").exists()
    r = our_site.run_cli("stop", our_site.NAME)
    assert r.returncode == 0 and "Endpoint not active." in r.stderr
