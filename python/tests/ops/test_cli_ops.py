"""``login`` / ``logout`` / ``whoami`` of OUR ``globus-compute-endpoint`` against our running
gc-service (SQLite, a fresh RabbitMQ vhost), with the token store ``storage.db``.

* a stored login (no ``GLOBUS_COMPUTE_CLIENT_*`` variables): ``login`` reads a client ID and
  secret from standard input, stores them and their tokens (mode 0600, upstream's SQLite
  schema, namespace ``user/local``); ``whoami`` and ``start`` then work without the variables;
  ``logout`` refuses while an endpoint runs, and otherwise revokes the tokens at the service;
* a client identity from the environment: tokens cached under
  ``clientprofile/local/<client id>``, as upstream's client login does;
* the error paths: wrong secret (the Auth error block, exit 77), end of input (``Aborted!``),
  half-set variables, ``whoami`` without any login.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import requests

_spec = importlib.util.spec_from_file_location(
    "gcrs_service_conftest", Path(__file__).resolve().parents[1] / "service" / "conftest.py"
)
svc = sys.modules.get("gcrs_service_conftest")
if svc is None:
    svc = importlib.util.module_from_spec(_spec)
    sys.modules["gcrs_service_conftest"] = svc
    _spec.loader.exec_module(svc)

pytestmark = pytest.mark.timeout(240)

USERNAME = "ops@example.org"
NOT_LOGGED_IN = "Error: Unable to retrieve user information. Please log in again."


class Ops:
    def __init__(self, service, client: dict, workdir: Path):
        self.service = service
        self.client = client
        self.workdir = workdir


@pytest.fixture(scope="module")
def ops(port_5000):
    workdir = Path(tempfile.mkdtemp(prefix="gcrs-cli-ops-"))
    vhost = svc.Vhost()
    db = svc.Database("sqlite", workdir)
    service = svc.Service(db, vhost, workdir)
    saved = dict(os.environ)
    ok = False
    try:
        service.start()
        client = service.create_client("cli-ops")
        service.admin(
            "identity", "add", "--client", client["client_id"], "--username", USERNAME,
            "--email", USERNAME, "--name", "Ops",
        )
        os.environ.update(svc._sdk_env(client, workdir / "sdk"))
        yield Ops(service, client, workdir)
        ok = True
    finally:
        service.stop()
        os.environ.clear()
        os.environ.update(saved)
        db.drop()
        vhost.delete()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"\ncli ops test logs kept in {workdir}", file=sys.stderr)


def gce(compute_dir: Path, *args: str, client: dict | None = None, stdin: str | None = None):
    """Our CLI as root with only the variables that choose the service (and optionally a
    client identity)."""
    env = {
        "HOME": str(compute_dir.parent),
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "COLUMNS": "200",
        "GLOBUS_SDK_ENVIRONMENT": "local",
        "GLOBUS_SDK_SERVICE_URL_AUTH": "http://localhost:5000/auth/",
        "GLOBUS_COMPUTE_USER_DIR": str(compute_dir),
    }
    if client:
        env["GLOBUS_COMPUTE_CLIENT_ID"] = client["client_id"]
        env["GLOBUS_COMPUTE_CLIENT_SECRET"] = client["client_secret"]
    return subprocess.run(
        [svc.endpoint_bin(), *args],
        env=env,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=60,
    )


def stored(compute_dir: Path) -> dict:
    """namespace -> {resource_server: token json}, plus the stored identities."""
    with sqlite3.connect(compute_dir / "storage.db") as conn:
        rows = conn.execute("SELECT namespace, resource_server, token_data_json FROM token_storage").fetchall()
        ids = conn.execute("SELECT namespace, client_id FROM gcrs_client_identity").fetchall()
    out: dict = {}
    for ns, rs, data in rows:
        out.setdefault(ns, {})[rs] = json.loads(data)
    return {"tokens": out, "identities": dict(ids)}


def authorized(token: str) -> int:
    return requests.get(
        f"{svc.BASE}/v2/endpoints", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).status_code


def test_stored_login_whoami_logout(ops, tmp_path):
    cd = tmp_path / "gc"
    r = gce(cd, "whoami")
    assert r.returncode == 1 and r.stderr.strip() == NOT_LOGGED_IN

    # End of input at the prompt.
    r = gce(cd, "login", stdin="")
    assert r.returncode == 1 and r.stderr.endswith("Aborted!\n"), r.stderr

    # A wrong secret: the service refuses, the Auth error block, nothing stored.
    r = gce(cd, "login", stdin=f"{ops.client['client_id']}\nnot-the-secret\n")
    assert r.returncode == 77, (r.stdout, r.stderr)
    assert "Compute CLI Error: An Auth API error occurred." in r.stdout
    assert "HTTP status:       401" in r.stdout
    assert not stored(cd)["identities"] if (cd / "storage.db").exists() else True

    r = gce(cd, "login", stdin=f"{ops.client['client_id']}\n{ops.client['client_secret']}\n")
    assert r.returncode == 0, r.stderr
    assert "Client ID: " in r.stderr and "Client Secret: " in r.stderr
    assert f"> Logged in as client {ops.client['client_id']}" in r.stderr
    db = cd / "storage.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    s = stored(cd)
    assert s["identities"] == {"user/local": ops.client["client_id"]}
    tokens = s["tokens"]["user/local"]
    assert set(tokens) == {"funcx_service", "auth.globus.org"}
    for rs, t in tokens.items():
        assert t["resource_server"] == rs and t["token_type"] == "Bearer"
        assert {"scope", "access_token", "refresh_token", "expires_at_seconds"} <= set(t)
    compute_token = tokens["funcx_service"]["access_token"]
    assert authorized(compute_token) == 200

    r = gce(cd, "login")
    assert r.returncode == 0 and r.stderr == "> Already logged in. Use --force to run login flow anyway\n"

    r = gce(cd, "whoami")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [c.strip() for c in lines[1].strip("|").split("|")] == ["Username", "Name", "ID", "Email"]
    assert USERNAME in r.stdout
    r = gce(cd, "whoami", "--linked-identities")
    assert r.returncode == 0 and USERNAME in r.stdout, r.stderr
    # whoami used the stored tokens: nothing new was stored.
    assert stored(cd)["tokens"]["user/local"] == tokens

    r = gce(cd, "logout")
    assert r.returncode == 0 and r.stderr == "> Logout succeeded and all cached credentials were revoked\n"
    s = stored(cd)
    assert s == {"tokens": {}, "identities": {}}
    assert authorized(compute_token) == 401
    r = gce(cd, "whoami")
    assert r.returncode == 1 and r.stderr.strip() == NOT_LOGGED_IN


def test_client_identity_from_environment(ops, tmp_path):
    cd = tmp_path / "gc"
    r = gce(cd, "login", client=ops.client)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    ns = f"clientprofile/local/{ops.client['client_id']}"
    s = stored(cd)
    assert list(s["tokens"]) == [ns] and s["identities"] == {}
    r = gce(cd, "login", client=ops.client)
    assert r.stderr == "> Already logged in. Use --force to run login flow anyway\n"
    r = gce(cd, "login", "--force", client=ops.client)
    assert r.returncode == 0 and r.stderr == ""
    assert stored(cd)["tokens"][ns]["funcx_service"] != s["tokens"][ns]["funcx_service"]
    r = gce(cd, "whoami", client=ops.client)
    assert r.returncode == 0 and USERNAME in r.stdout

    half = {"client_id": "", "client_secret": ops.client["client_secret"]}
    for cmd in ("login", "logout", "whoami"):
        r = gce(cd, cmd, client=half)
        assert r.returncode == 1
        assert r.stderr.startswith(
            "Error: Both GLOBUS_COMPUTE_CLIENT_ID and GLOBUS_COMPUTE_CLIENT_SECRET must be set"
        ), (cmd, r.stderr)

    token = stored(cd)["tokens"][ns]["funcx_service"]["access_token"]
    r = gce(cd, "logout", client=ops.client)
    assert r.returncode == 0
    assert stored(cd)["tokens"] == {}
    assert authorized(token) == 401


def test_start_with_stored_login_and_logout_while_running(ops):
    """A throwaway user logs in once, then starts OUR endpoint without the variables; the
    SDK runs a task on it; logout refuses while it runs, --force revokes."""
    ep = svc.OurEndpoint(ops.client)
    try:
        for k in ("GLOBUS_COMPUTE_CLIENT_ID", "GLOBUS_COMPUTE_CLIENT_SECRET"):
            del ep.env[k]
        ep.env["COLUMNS"] = "200"
        r = subprocess.run(
            ep._cmd(["globus-compute-endpoint", "login"]),
            input=f"{ops.client['client_id']}\n{ops.client['client_secret']}\n",
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ep.home,
        )
        assert r.returncode == 0, r.stderr
        endpoint_id = ep.start(timeout=60)

        from globus_compute_sdk import Executor

        Executor._default_task_group_id = None
        with Executor(endpoint_id=endpoint_id) as ex:
            assert ex.submit(pow, 2, 10).result(timeout=90) == 1024

        r = ep.run_cli("logout")
        assert r.returncode == 0
        assert r.stderr == (
            f"> The following endpoints are currently running: {ep.NAME}\n"
            "Please use logout --force to proceed\n"
        )
        assert (ep.home / ".globus_compute" / "storage.db").exists()
        r = ep.run_cli("whoami")
        assert r.returncode == 0 and USERNAME in r.stdout
        r = ep.run_cli("logout", "--force")
        assert r.returncode == 0
        assert r.stderr == "> Logout succeeded and all cached credentials were revoked\n"
        r = ep.run_cli("whoami")
        assert r.returncode == 1 and r.stderr.strip() == NOT_LOGGED_IN
    finally:
        ep.cleanup(keep_logs_in=ops.workdir)


REPO = Path(__file__).resolve().parents[3]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_unit_verifies(tmp_path):
    """deploy/systemd/gc-service.service passes ``systemd-analyze verify`` (with ExecStart
    pointed at the built binary, which verify requires to exist) and its offline security
    rating stays in the "OK" band."""
    unit = (REPO / "deploy" / "systemd" / "gc-service.service").read_text()
    assert "ExecStart=/usr/local/bin/gc-service serve" in unit
    (tmp_path / "gc-service.service").write_text(
        unit.replace("/usr/local/bin/gc-service", svc.service_bin())
    )
    r = subprocess.run(
        ["systemd-analyze", "verify", "./gc-service.service"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", "./gc-service.service"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    level = float(r.stdout.split("Overall exposure level for gc-service.service:")[1].split()[0])
    assert level < 2.0, r.stdout[-2000:]
