"""Fixtures of the fault-injection tests (helpers in ``faultkit.py``).

The port-5000 lock is the session fixture of ``tests/conftest.py``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest


def load_faultkit():
    """``faultkit.py`` as one module, whoever imports it first (tests import it the same way)."""
    if "gcrs_faultkit" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "gcrs_faultkit", Path(__file__).resolve().parent / "faultkit.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["gcrs_faultkit"] = module
        spec.loader.exec_module(module)
    return sys.modules["gcrs_faultkit"]


kit = load_faultkit()
svc = kit.svc
PrivateRabbit = kit.PrivateRabbit
FaultSite = kit.FaultSite
FaultEndpoint = kit.FaultEndpoint


@pytest.fixture(scope="module")
def rabbit():
    workdir = Path(tempfile.mkdtemp(prefix="gcrs-fault-rabbit-"))
    node = PrivateRabbit(workdir)
    node.start()
    try:
        yield node
    finally:
        node.kill()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def make_site(port_5000, rabbit, request):
    """Builds a FaultSite (one per test); everything is torn down afterwards, logs kept in
    /tmp/gcrs-fault-tests-* when the test failed."""
    made: list[FaultSite] = []
    saved = dict(os.environ)
    failed_before = request.session.testsfailed

    def make(max_workers: int = 4, endpoint_amqp_url=None) -> FaultSite:
        workdir = Path(tempfile.mkdtemp(prefix="gcrs-fault-tests-"))
        site = FaultSite(rabbit, workdir, endpoint_amqp_url)
        made.append(site)
        site.service.start()
        site.client = site.service.create_client("faults")
        os.environ.update(svc._sdk_env(site.client, workdir / "sdk"))
        from globus_compute_sdk import Executor

        Executor._default_task_group_id = None
        site.endpoint = FaultEndpoint(site.client, max_workers=max_workers)
        site.endpoint.start(timeout=60)
        return site

    yield make
    failed = request.session.testsfailed > failed_before
    for site in made:
        if site.endpoint:
            site.endpoint.cleanup(keep_logs_in=site.workdir if failed else None)
        site.service.stop()
        if failed:
            for log in (rabbit.dir / "log").glob("*.log"):
                shutil.copyfile(log, site.workdir / f"rabbit-{log.name}")
            print(f"\nfault test logs kept in {site.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(site.workdir, ignore_errors=True)
    os.environ.clear()
    os.environ.update(saved)
