"""High assurance audit log (ENDPOINT.md §4.10) of OUR multi-user endpoint as root, end to end:
a high-assurance authentication policy created through gc-service's Auth policy API with the
unmodified globus-sdk, the MEP registered with ``high_assurance``, ``subscription_id``,
``authentication_policy`` and ``audit_log_path``, identity mapping to a Linux user created
here, and one task submitted with the unmodified SDK. After the task, the audit log holds the
MEP's ``Begin`` line, the user endpoint's ``RECEIVED``/``EXEC_START``/``EXEC_END`` records of
that task with the mapped user's uid (from the MEP's bookkeeping), and, after shutdown, the
``End`` line. The records travel over the packet pipe at descriptor 4 through the real
bootstrap program.

Skipped unless run as root on Linux with RabbitMQ on 127.0.0.1:5672.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import globus_sdk
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_multiuser as mu  # noqa: E402  (the MEP, user and SDK helpers)

svc = mu.svc

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(os.geteuid() != 0, reason="the multi-user endpoint runs as root"),
]

MANAGE_PROJECTS = "urn:globus:auth:scope:auth.globus.org:manage_projects"


def ha_policy(client: dict, workdir: Path) -> dict:
    """A high-assurance policy created by ``client`` through the service's Auth policy API
    (the SDK in this process pointed at the service for the call)."""
    saved = dict(os.environ)
    os.environ.update(svc._sdk_env(client, workdir / "sdk-admin"))
    try:
        return _create_policy(client)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _create_policy(client: dict) -> dict:
    app = globus_sdk.ClientApp(
        app_name=f"gcrs-ha-{uuid.uuid4().hex[:6]}",
        client_id=client["client_id"],
        client_secret=client["client_secret"],
        config=globus_sdk.GlobusAppConfig(token_storage="memory"),
    )
    app.add_scope_requirements({"auth.globus.org": [MANAGE_PROJECTS]})
    return globus_sdk.AuthClient(app=app).create_policy(
        project_id=str(uuid.uuid4()),
        display_name="ha",
        description="high assurance for the audit test",
        high_assurance=True,
        authentication_assurance_timeout=3600,
    )["policy"]


def test_audit_log_records_an_sdk_task_with_the_mapped_uid(port_5000):
    workdir = Path(tempfile.mkdtemp(prefix="gcrs-mu-ha-"))
    workdir.chmod(0o755)
    user = f"gcha{mu.TAG}"
    home = workdir / "home"
    home.mkdir()
    home.chmod(0o755)
    mu.run("useradd", "-s", "/bin/sh", "-m", "-d", str(home / user), user)
    vhost = svc.Vhost()
    db = svc.Database("sqlite", workdir)
    service = svc.Service(db, vhost, workdir)
    mep = None
    ok = False
    try:
        service.start()
        admin = service.create_client("ha-admin")
        client = service.create_client("ha-user")
        policy = ha_policy(admin, workdir)
        mep = mu.MultiUserEndpoint(workdir / "site", admin, {client["client_id"]: user}, None)
        audit = workdir / "site" / "audit.log"
        with open(mep.ep_dir / "config.yaml", "a") as f:
            f.write(
                "high_assurance: true\n"
                f"subscription_id: {uuid.uuid4()}\n"
                f"authentication_policy: {policy['id']}\n"
                f"audit_log_path: {audit}\n"
            )
        mep.start()
        result = mu.submit(client, mep.endpoint_id, workdir, {"workers": 1})
        assert "ok" in result, (result, mep.log()[-4000:])
        uid = pwd.getpwnam(user).pw_uid
        assert result["ok"]["uid"] == uid
        mu.check_descriptors_and_secrets(result["ok"])
        # The audit pipe is the UEP's alone: the worker does not hold it.
        parent = {int(k): v for k, v in result["ok"]["parent_fds"].items()}
        assert parent[4].startswith("pipe:"), parent
        assert parent[4] not in result["ok"]["fds"].values()

        def records():
            text = audit.read_text() if audit.exists() else ""
            return "EXEC_END" in text and text

        text = svc.wait_for(records, 60, "the task's audit records")
        mep.stop()
        assert mep.proc.returncode == 0, mep.log()[-3000:]
        text = audit.read_text()
        lines = text.splitlines()
        assert (audit.stat().st_mode & 0o777) == 0o600
        eid = mep.endpoint_id
        ts = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d\d:\d\d"
        assert re.fullmatch(rf"{ts} uid=0 pid=\d+ eid={eid} Begin CEP session =====", lines[0])
        assert re.fullmatch(rf"{ts} uid=0 pid=\d+ eid={eid} End CEP session -----", lines[-1])
        task_lines = lines[1:-1]
        states = [ln.rsplit(" ", 1)[-1] for ln in task_lines]
        assert states == ["RECEIVED", "EXEC_START", "EXEC_END"], text
        uuid_re = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
        for ln in task_lines:
            m = re.fullmatch(
                rf"{ts} uid=(\d+) pid=(\d+) uep=({uuid_re}) fid=({uuid_re}) tid=({uuid_re}) "
                r"bid=\S* (?:jid=\S* )?[A-Z_]+",
                ln,
            )
            assert m, ln
            assert int(m.group(1)) == uid, ln
        # One UEP, one function, one task.
        assert len({tuple(ln.split()[1:6]) for ln in task_lines}) == 1, text
        ok = True
    finally:
        if mep:
            mep.stop()
            if not ok:
                print(f"\nMEP log:\n{mep.log()[-6000:]}", file=sys.stderr)
        service.stop()
        db.drop()
        vhost.delete()
        subprocess.run(["pkill", "-KILL", "-u", user], capture_output=True)
        subprocess.run(["userdel", "-r", user], capture_output=True)
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"\nHA test files kept in {workdir}", file=sys.stderr)
