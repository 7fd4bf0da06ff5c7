"""Tenant isolation: per-endpoint broker credentials (``--broker-admin-url``), the REST
ownership rules between two clients, and secrets kept out of the service log.

The service runs on a port of its own (not 5000: nothing here needs the SDK's ``local``
environment), with ``GCRS_LOG=debug``, on SQLite and on PostgreSQL. Endpoints are played by
pika with exactly the credentials the service handed out, so every refusal below is
RabbitMQ's own permission check."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
import uuid
from pathlib import Path

import pika
import pika.exceptions
import pytest
import requests
from .conftest import COMPUTE_SCOPE, Database, Vhost, service_bin, wait_for

pytestmark = pytest.mark.timeout(300)

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class IsolatedService:
    def __init__(self, kind: str):
        self.workdir = Path(tempfile.mkdtemp(prefix=f"gcrs-iso-{kind}-"))
        self.vhost = Vhost()
        self.db = Database(kind, self.workdir)
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = self.workdir / "service.log"
        self.env = dict(os.environ, GCRS_DATABASE_URL=self.db.url, GCRS_LOG="debug")
        # The service's own broker user (also its management API user), with a random
        # password, so the log check below covers the service's own credentials too.
        self.admin_user = f"gcrs-svc-{uuid.uuid4().hex[:10]}"
        self.admin_password = secrets.token_urlsafe(24)
        api, guest = "http://127.0.0.1:15672/api", ("guest", "guest")
        requests.put(
            f"{api}/users/{self.admin_user}",
            auth=guest,
            json={"password": self.admin_password, "tags": "administrator"},
            timeout=10,
        ).raise_for_status()
        requests.put(
            f"{api}/permissions/{self.vhost.name}/{self.admin_user}",
            auth=guest,
            json={"configure": ".*", "write": ".*", "read": ".*"},
            timeout=10,
        ).raise_for_status()
        amqp_url = f"amqp://{self.admin_user}:{self.admin_password}@127.0.0.1:5672/{self.vhost.name}"
        admin_url = f"http://{self.admin_user}:{self.admin_password}@127.0.0.1:15672"
        self.secrets: list[str] = [self.admin_password]
        with open(self.log, "a") as logf:
            self.proc = subprocess.Popen(
                [
                    service_bin(),
                    "serve",
                    "--listen",
                    f"127.0.0.1:{self.port}",
                    "--amqp-url",
                    amqp_url,
                    "--broker-admin-url",
                    admin_url,
                    "--uep-start-timeout",
                    "1",
                ],
                env=self.env,
                stdout=logf,
                stderr=subprocess.STDOUT,
            )

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"gc-service exited: {self.log.read_text()[-3000:]}")
            try:
                return requests.get(f"{self.base}/v2/version", timeout=1).ok
            except requests.RequestException:
                return False

        wait_for(ready, 30, "gc-service to answer")

    def client(self, name: str) -> dict:
        r = subprocess.run(
            [service_bin(), "client", "create", "--name", name, "--json"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        c = json.loads(r.stdout)
        self.secrets.append(c["client_secret"])
        r = requests.post(
            f"{self.base}/auth/v2/oauth2/token",
            auth=(c["client_id"], c["client_secret"]),
            data={"grant_type": "client_credentials", "scope": COMPUTE_SCOPE},
            timeout=10,
        )
        r.raise_for_status()
        c["token"] = r.json()["access_token"]
        self.secrets.append(c["token"])
        c["h"] = {"Authorization": f"Bearer {c['token']}"}
        return c

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)

    def cleanup(self, keep: bool):
        self.stop()
        self.db.drop()
        # Broker users outlive their vhost: remove the ones the service created for it.
        api = "http://127.0.0.1:15672/api"
        auth = ("guest", "guest")
        perms = requests.get(f"{api}/vhosts/{self.vhost.name}/permissions", auth=auth, timeout=10)
        for p in perms.json() if perms.ok else []:
            if p["user"].startswith("gcrs-ep-"):
                requests.delete(f"{api}/users/{p['user']}", auth=auth, timeout=10)
        requests.delete(f"{api}/users/{self.admin_user}", auth=auth, timeout=10)
        self.vhost.delete()
        if not keep:
            shutil.rmtree(self.workdir, ignore_errors=True)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def svc(request):
    failed_before = request.session.testsfailed
    s = IsolatedService(request.param)
    try:
        yield s
    finally:
        s.cleanup(keep=request.session.testsfailed > failed_before)


@pytest.fixture(scope="module")
def tenants(svc):
    """Two clients, each with a registered endpoint and a submitted task."""
    out = {}
    for name in ("a", "b"):
        c = svc.client(name)
        r = requests.post(
            f"{svc.base}/v3/endpoints",
            headers=c["h"],
            json={"endpoint_name": f"ep-{name}", "metadata": {}},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        c["reg"] = r.json()
        c["eid"] = c["reg"]["endpoint_id"]
        c["fid"] = requests.post(
            f"{svc.base}/v3/functions",
            headers=c["h"],
            json={"function_name": "f", "function_code": "code", "serialized": True},
            timeout=10,
        ).json()["function_uuid"]
        r = requests.post(
            f"{svc.base}/v3/endpoints/{c['eid']}/submit",
            headers=c["h"],
            json={"tasks": {c["fid"]: ["payload"]}, "create_queue": True},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        c["tg"] = r.json()["task_group_id"]
        c["tid"] = r.json()["tasks"][c["fid"]][0]
        out[name] = c
    return out


def _url(c: dict) -> str:
    return c["reg"]["command_queue_info"]["connection_url"]


def _password(url: str) -> str:
    return pika.URLParameters(url).credentials.password


def _refused(url: str, action) -> None:
    with pika.BlockingConnection(pika.URLParameters(url)) as conn:
        ch = conn.channel()
        ch.confirm_delivery()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
            action(ch)
        assert info.value.reply_code == 403, info.value


def _start_command(c: dict) -> dict:
    """The start command the submit queued for the endpoint, read with its own credentials."""
    with pika.BlockingConnection(pika.URLParameters(_url(c))) as conn:
        ch = conn.channel()
        method, _props, body = ch.basic_get(c["reg"]["command_queue_info"]["queue"], auto_ack=True)
        assert method is not None, "no start command queued"
        return json.loads(body)


def test_each_endpoint_gets_its_own_broker_user(tenants):
    a, b = tenants["a"], tenants["b"]
    ua, ub = pika.URLParameters(_url(a)), pika.URLParameters(_url(b))
    assert ua.credentials.username == f"gcrs-ep-{a['eid']}"
    assert ub.credentials.username == f"gcrs-ep-{b['eid']}"
    assert _password(_url(a)) != _password(_url(b))
    for info in ("command_queue_info", "heartbeat_queue_info", "result_queue_info"):
        assert a["reg"][info]["connection_url"] == _url(a)


def test_endpoint_credentials_reach_only_their_own_queues(tenants, svc):
    a, b = tenants["a"], tenants["b"]
    url = _url(a)
    a_cmd = a["reg"]["command_queue_info"]["queue"]
    b_cmd = b["reg"]["command_queue_info"]["queue"]

    # Its own command queue: passive declare and consume work.
    with pika.BlockingConnection(pika.URLParameters(url)) as conn:
        ch = conn.channel()
        ch.queue_declare(a_cmd, passive=True)
        ch.exchange_declare("heartbeats", passive=True)
        ch.basic_consume(a_cmd, lambda *_: None)
        ch.confirm_delivery()
        ch.basic_publish("heartbeats", f"{a['eid']}.heartbeats", b"\x01{}", mandatory=True)

    # Another endpoint's command queue, another endpoint's routing keys, SDK result queues
    # (default exchange), declaring anything: all refused by RabbitMQ.
    _refused(url, lambda ch: ch.basic_get(b_cmd))
    _refused(url, lambda ch: ch.basic_consume(b_cmd, lambda *_: None))
    _refused(url, lambda ch: ch.basic_publish("results", f"{b['eid']}.results", b"x"))
    _refused(url, lambda ch: ch.basic_publish("heartbeats", f"{b['eid']}.heartbeats", b"x"))
    _refused(url, lambda ch: ch.basic_publish("", f"gcrs_results_{b['tg']}", b"x"))
    _refused(url, lambda ch: ch.basic_get(f"gcrs_results_{a['tg']}"))
    _refused(url, lambda ch: ch.queue_declare("mine"))
    _refused(url, lambda ch: ch.queue_purge(b_cmd))


def test_user_endpoint_credentials_reach_only_their_own_task_queue(tenants):
    a, b = tenants["a"], tenants["b"]
    ca = _start_command(a)["kwargs"]["amqp_creds"]
    cb = _start_command(b)["kwargs"]["amqp_creds"]
    url_a = ca["task_queue_info"]["connection_url"]
    assert pika.URLParameters(url_a).credentials.username == f"gcrs-ep-{ca['endpoint_id']}"
    assert url_a != _url(a)  # the user endpoint has a user of its own

    with pika.BlockingConnection(pika.URLParameters(url_a)) as conn:
        ch = conn.channel()
        method, props, _body = ch.basic_get(ca["task_queue_info"]["queue"], auto_ack=False)
        assert method is not None and props.headers["task_uuid"] == a["tid"]
        ch.basic_nack(method.delivery_tag, requeue=True)
        ch.confirm_delivery()
        kw = ca["result_queue_info"]["queue_publish_kwargs"]
        ch.basic_publish(kw["exchange"], kw["routing_key"], b"\x01{}", mandatory=True)

    _refused(url_a, lambda ch: ch.basic_get(cb["task_queue_info"]["queue"]))
    _refused(url_a, lambda ch: ch.basic_get(a["reg"]["command_queue_info"]["queue"]))
    _refused(
        url_a,
        lambda ch: ch.basic_publish("results", cb["result_queue_info"]["queue_publish_kwargs"]["routing_key"], b"x"),
    )
    # ... and the endpoint's own user cannot read its user endpoints' tasks either.
    _refused(_url(a), lambda ch: ch.basic_get(ca["task_queue_info"]["queue"]))


def test_rest_objects_of_another_client_are_out_of_reach(tenants, svc):
    a, b = tenants["a"], tenants["b"]
    base, h = svc.base, b["h"]
    assert requests.get(f"{base}/v2/tasks/{a['tid']}", headers=h, timeout=10).status_code == 404
    r = requests.post(f"{base}/v2/batch_status", headers=h, json={"task_ids": [a["tid"]]}, timeout=10)
    assert r.status_code == 200 and r.json()["results"] == {}
    assert requests.get(f"{base}/v2/taskgroup/{a['tg']}", headers=h, timeout=10).status_code == 403
    assert requests.get(f"{base}/v2/functions/{a['fid']}", headers=h, timeout=10).status_code == 404
    assert requests.delete(f"{base}/v2/functions/{a['fid']}", headers=h, timeout=10).status_code == 404
    assert requests.get(f"{base}/v2/endpoints/{a['eid']}", headers=h, timeout=10).status_code == 404
    assert requests.get(f"{base}/v2/endpoints/{a['eid']}/status", headers=h, timeout=10).status_code == 404
    assert requests.delete(f"{base}/v2/endpoints/{a['eid']}", headers=h, timeout=10).status_code == 403
    assert requests.post(f"{base}/v3/endpoints/{a['eid']}/lock", headers=h, timeout=10).status_code == 403
    r = requests.put(
        f"{base}/v3/endpoints/{a['eid']}",
        headers=h,
        json={"endpoint_name": "steal", "metadata": {}},
        timeout=10,
    )
    assert r.status_code == 409
    r = requests.post(
        f"{base}/v3/endpoints/{a['eid']}/submit",
        headers=h,
        json={"tasks": {b["fid"]: ["x"]}},
        timeout=10,
    )
    assert r.status_code == 403
    # Reusing another client's task group id is refused.
    r = requests.post(
        f"{base}/v3/endpoints/{b['eid']}/submit",
        headers=h,
        json={"tasks": {b["fid"]: ["x"]}, "task_group_id": a["tg"]},
        timeout=10,
    )
    assert r.status_code == 403
    listed = requests.get(f"{base}/v2/endpoints", headers=h, timeout=10).json()
    assert [e["uuid"] for e in listed] == [b["eid"]]
    # The owner still sees everything.
    assert requests.get(f"{base}/v2/tasks/{a['tid']}", headers=a["h"], timeout=10).status_code == 200


def test_secrets_never_reach_the_log(tenants, svc):
    """The debug log of everything above holds no client secret, no access token, no broker
    password the service handed out, and not the service's own broker password."""
    a, b = tenants["a"], tenants["b"]
    hidden = list(svc.secrets)
    for c in (a, b):
        hidden.append(_password(_url(c)))
    # The user endpoints' passwords (read from the start commands the service queued again).
    for c in (a, b):
        requests.post(
            f"{svc.base}/v3/endpoints/{c['eid']}/submit",
            headers=c["h"],
            json={"tasks": {c["fid"]: ["again"]}},
            timeout=30,
        ).raise_for_status()
        creds = _start_command(c)["kwargs"]["amqp_creds"]
        hidden.append(_password(creds["task_queue_info"]["connection_url"]))
    # A failed login with a wrong secret must not log the attempted secret either.
    wrong = "wrong-secret-" + "x" * 20
    r = requests.post(
        f"{svc.base}/auth/v2/oauth2/token",
        auth=(a["client_id"], wrong),
        data={"grant_type": "client_credentials", "scope": COMPUTE_SCOPE},
        timeout=10,
    )
    assert r.status_code == 401
    hidden.append(wrong)
    log = svc.log.read_text(errors="replace")
    assert "DEBUG" in log, "the service did not log at debug level"
    assert len(hidden) == 10
    for s in hidden:
        assert len(s) >= 20 and s not in log


def test_deleting_an_endpoint_withdraws_its_broker_users(tenants, svc):
    b = tenants["b"]
    r = requests.post(
        f"{svc.base}/v3/endpoints/{b['eid']}/submit",
        headers=b["h"],
        json={"tasks": {b["fid"]: ["once more"]}},
        timeout=30,
    )
    r.raise_for_status()
    uep_url = _start_command(b)["kwargs"]["amqp_creds"]["task_queue_info"]["connection_url"]
    for url in (_url(b), uep_url):
        pika.BlockingConnection(pika.URLParameters(url)).close()  # valid before
    r = requests.delete(f"{svc.base}/v2/endpoints/{b['eid']}", headers=b["h"], timeout=30)
    assert r.status_code == 200
    for url in (_url(b), uep_url):
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            pika.BlockingConnection(pika.URLParameters(url))
    # The other tenant is untouched.
    pika.BlockingConnection(pika.URLParameters(_url(tenants["a"]))).close()


def test_database_file_is_private(svc):
    if svc.db.kind != "sqlite":
        pytest.skip("PostgreSQL keeps its files itself")
    path = Path(svc.db.url.removeprefix("sqlite://"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
