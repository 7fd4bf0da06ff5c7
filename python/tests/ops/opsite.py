"""A running site for the operations tests (metrics, status page): our gc-service on
127.0.0.1:5000 (a fresh RabbitMQ vhost, SQLite or a fresh PostgreSQL database), one client,
and an endpoint with a thread-pool user endpoint, started as a throwaway user: the unmodified
upstream endpoint by default (what is measured here is the service), or OUR endpoint
(``GCRS_ENDPOINT_BIN``). The fixture helpers are those of ``tests/service/conftest.py``.

Loaded by file path (not a conftest, so the neighbouring tests' conftest stays theirs).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import requests

_spec = importlib.util.spec_from_file_location(
    "gcrs_service_conftest", Path(__file__).resolve().parents[1] / "service" / "conftest.py"
)
svc = sys.modules.get("gcrs_service_conftest")
if svc is None:
    svc = importlib.util.module_from_spec(_spec)
    sys.modules["gcrs_service_conftest"] = svc
    _spec.loader.exec_module(svc)

BASE = svc.BASE

# Functions defined in a "__main__" namespace so dill ships them by value.
FUNCS = {"__name__": "__main__"}
exec(
    """
def double(x):
    return x * 2

def boom(x):
    raise ValueError(f"bad value {x}")

def nap(seconds):
    import time
    time.sleep(seconds)
    return seconds
""",
    FUNCS,
)


class OpsSite:
    def __init__(self, service, client, endpoint, workdir: Path):
        self.service = service
        self.client = client
        self.endpoint = endpoint
        self.workdir = workdir

    @property
    def endpoint_id(self) -> str:
        return self.endpoint.endpoint_id

    def token(self) -> str:
        return svc.get_token(self.client)


@contextlib.contextmanager
def running_site(
    name: str,
    db_kind: str = "sqlite",
    env: dict | None = None,
    ours: bool = False,
    endpoint_env: dict | None = None,
):
    """Yield an :class:`OpsSite`; logs stay in /tmp/gcrs-ops-<name>-* if the body raised."""
    workdir = Path(tempfile.mkdtemp(prefix=f"gcrs-ops-{name}-"))
    vhost = svc.Vhost()
    db = svc.Database(db_kind, workdir)
    service = svc.Service(db, vhost, workdir)
    service.env.update(env or {})
    endpoint = None
    saved = dict(os.environ)
    ok = False
    try:
        service.start()
        client = service.create_client(f"ops-{name}")
        os.environ.update(svc._sdk_env(client, workdir / "sdk"))
        from globus_compute_sdk import Executor

        Executor._default_task_group_id = None
        endpoint = (svc.OurEndpoint if ours else svc.UpstreamEndpoint)(client)
        endpoint.env.update(endpoint_env or {})
        endpoint.start(timeout=60)
        yield OpsSite(service, client, endpoint, workdir)
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
            print(f"\nops test logs kept in {workdir}", file=sys.stderr)


def run_tasks(endpoint_id: str, ok: int, failing: int) -> None:
    """Run ``ok`` successful and ``failing`` raising tasks through the unmodified SDK."""
    from globus_compute_sdk import Executor
    from globus_compute_sdk.errors import TaskExecutionFailed

    with Executor(endpoint_id=endpoint_id) as ex:
        good = [ex.submit(FUNCS["double"], i) for i in range(ok)]
        bad = [ex.submit(FUNCS["boom"], i) for i in range(failing)]
        assert [f.result(timeout=90) for f in good] == [2 * i for i in range(ok)]
        for f in bad:
            try:
                f.result(timeout=90)
            except TaskExecutionFailed as e:
                assert "ValueError: bad value" in str(e)
            else:
                raise AssertionError("a raising task succeeded")


# name, optional {labels} (quoted values may hold braces: route="/v2/tasks/{id}"), value
_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})? (\S+)$')


def scrape(url: str = f"{BASE}/metrics") -> dict[str, float]:
    """The exposition as {'name{labels}': value}, labels in the order they were written."""
    r = requests.get(url, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.endswith("# EOF\n")
    out = {}
    for line in r.text.splitlines():
        if line.startswith("#") or not line:
            continue
        m = _LINE.match(line)
        assert m, f"unparsable exposition line: {line!r}"
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out
