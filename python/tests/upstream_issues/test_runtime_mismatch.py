"""Issue #10 point 1: the submitter's Python environment against the workers' (upstream
#2139, #1197 and their FAQ: a version mismatch used to surface as an opaque "worker lost").

Real service, RabbitMQ, our endpoint (ThreadPoolEngine, run as a throwaway user) and the
unmodified SDK.  Only one Python is installed here, so the test makes the SDK *report* another
one: it wraps ``globus_compute_sdk.sdk.client.create_user_runtime`` (what ``Client`` sends as
``user_runtime`` with every submit) and changes the Python version in it.  The payload itself is
serialized by this very Python, so a task that still ran would succeed -- a failure can only
come from the worker's comparison of the runtimes.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import platform
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "gcrs_service_conftest", Path(__file__).resolve().parents[1] / "service" / "conftest.py"
)
svc = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("gcrs_service_conftest", svc)
_spec.loader.exec_module(svc)

pytestmark = pytest.mark.timeout(240)

_FUNCS = {"__name__": "__main__"}
exec("def double(x):\n    return x * 2\n", _FUNCS)
double = _FUNCS["double"]


@pytest.fixture(scope="module")
def site(port_5000):
    workdir = Path(tempfile.mkdtemp(prefix="gcrs-runtime-tests-"))
    vhost = svc.Vhost()
    db = svc.Database("sqlite", workdir)
    service = svc.Service(db, vhost, workdir)
    endpoint = None
    saved = dict(os.environ)
    ok = False
    try:
        service.start()
        client = service.create_client("runtime-mismatch")
        os.environ.update(svc._sdk_env(client, workdir / "sdk"))
        endpoint = svc.OurEndpoint(client)
        endpoint.start(timeout=60)
        yield endpoint
        ok = True
    finally:
        if endpoint:
            if not ok:
                for log in endpoint.home.glob(".globus_compute/**/*.log"):
                    print(f"\n==== {log}\n{log.read_text()[-4000:]}", file=sys.stderr)
            endpoint.cleanup(keep_logs_in=None if ok else workdir)
        service.stop()
        os.environ.clear()
        os.environ.update(saved)
        db.drop()
        vhost.delete()
        shutil.rmtree(workdir, ignore_errors=True)


def _reporting(monkeypatch, version: str):
    """Make the SDK report Python ``version`` in ``user_runtime``."""
    from globus_compute_sdk.sdk import client as sdk_client

    real = sdk_client.create_user_runtime

    def fake():
        rt = real()
        parts = tuple(int(p) for p in version.split("."))
        py = dataclasses.replace(
            rt.python,
            version=version,
            version_tuple=parts,
            version_info=(*parts, "final", 0),
            version_description=f"{version} (main) [GCC]",
        )
        return dataclasses.replace(rt, python=py, python_version=py.version_description)

    monkeypatch.setattr(sdk_client, "create_user_runtime", fake)


def _uep_logs(site) -> str:
    return "".join(
        p.read_text(errors="replace")
        for p in site.home.glob(".globus_compute/**/*.log")
        if p.is_file()
    )


def test_other_python_minor_is_named_at_the_sdk(site, monkeypatch):
    from globus_compute_sdk import Executor
    from globus_compute_sdk.errors import TaskExecutionFailed

    here = platform.python_version()
    major, minor, _ = (int(p) for p in here.split("."))
    other = f"{major}.{minor + 1}.4"
    _reporting(monkeypatch, other)
    with Executor(endpoint_id=site.endpoint_id) as ex:
        fut = ex.submit(double, 21)
        with pytest.raises(TaskExecutionFailed) as info:
            fut.result(timeout=120)
        text = str(info.value)
        assert "EnvironmentMismatch" in text, text
        assert f"submitted from Python {other}" in text, text
        assert f"workers run Python {here}" in text, text
        assert "worker_init" in text and "virtual environment" in text, text
        # The worker was not lost: the same user endpoint keeps running tasks.
        assert ex.submit(double, 4) is not None
    monkeypatch.undo()
    with Executor(endpoint_id=site.endpoint_id) as ex:
        assert ex.submit(double, 21).result(timeout=120) == 42


def test_compatible_difference_runs_and_warns_in_the_endpoint_log(site, monkeypatch):
    from globus_compute_sdk import Executor

    major, minor, micro = (int(p) for p in platform.python_version().split("."))
    other = f"{major}.{minor}.{micro + 7}"
    _reporting(monkeypatch, other)
    with Executor(endpoint_id=site.endpoint_id) as ex:
        assert ex.submit(double, 5).result(timeout=120) == 10
    svc.wait_for(
        lambda: f"submitter runtime differs from the worker's (Python {other} vs" in _uep_logs(site),
        30,
        "the runtime warning in the endpoint log",
    )


def test_matching_runtime_draws_no_environment_warning(site):
    from globus_compute_sdk import Executor

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Executor(endpoint_id=site.endpoint_id) as ex:
            assert ex.submit(double, 8).result(timeout=120) == 16
    texts = [str(w.message) for w in caught]
    assert not [t for t in texts if "Environment differences detected" in t], texts
