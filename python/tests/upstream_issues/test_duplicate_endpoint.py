"""Issue #10 point 4: one endpoint id, several login nodes (upstream #581, #522, #128, #383).

Everything is real -- our gc-service (SQLite), RabbitMQ, our ``globus-compute-endpoint`` run as
throwaway users -- except the second "login node": this machine plays it, with its own compute
directory (another throwaway user's home) and the test-only host-name override
``GCRS_TEST_ENDPOINT_HOSTNAME`` (docs/troubleshooting.md), since the tests have one host.

The service listens on a free port of its own (not 5000: no SDK is involved, so these tests do
not wait for the port-5000 lock); the endpoints are pointed at it with the
``GLOBUS_SDK_SERVICE_URL_*`` variables.

Checked: a second ``start`` from another host is refused naming the holder; a holder killed with
SIGKILL expires after missed heartbeats; ``--takeover`` wins; ``stop --remote`` from a third
host stops every running instance; ``start`` exits non-zero saying why when the service is
unreachable, refuses the registration, or names a broker that cannot be reached.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "gcrs_service_conftest", Path(__file__).resolve().parents[1] / "service" / "conftest.py"
)
svc = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("gcrs_service_conftest", svc)
_spec.loader.exec_module(svc)

pytestmark = pytest.mark.timeout(300)

HOST_ENV = "GCRS_TEST_ENDPOINT_HOSTNAME"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PortService(svc.Service):
    """gc-service on a private port."""

    def __init__(self, *args):
        super().__init__(*args)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env["GCRS_LISTEN"] = f"127.0.0.1:{self.port}"

    def start(self):
        import requests

        logf = open(self.log, "a")
        self.proc = subprocess.Popen(
            [svc.service_bin(), "serve", "--amqp-url", self.vhost.url],
            env=self.env,
            stdout=logf,
            stderr=subprocess.STDOUT,
        )
        logf.close()

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"gc-service exited: {self.log.read_text()[-3000:]}")
            try:
                return requests.get(f"{self.base}/v2/version", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        svc.wait_for(ready, 30, "gc-service to answer")


class Host(svc.OurEndpoint):
    """Our endpoint in its own compute directory, reporting host name ``host``."""

    def __init__(self, service: PortService, client: dict, host: str):
        super().__init__(client)
        self.env[HOST_ENV] = host
        self.env["GLOBUS_SDK_SERVICE_URL_COMPUTE"] = service.base
        self.env["GLOBUS_SDK_SERVICE_URL_AUTH"] = f"{service.base}/auth/"
        self.service = service
        self.host = host

    def start(self, timeout: float = 60) -> str:
        """``start NAME``; returns the endpoint id once the service sees it online."""
        self.start_bg()
        ep_json = self.ep_dir / "endpoint.json"

        def registered():
            if self.proc.poll() is not None:
                raise AssertionError(f"endpoint exited: {self.output()}")
            return ep_json.exists() and json.loads(ep_json.read_text() or "{}").get("endpoint_id")

        self.endpoint_id = svc.wait_for(registered, timeout, "the endpoint to register")

        def online():
            registered()
            return status(self.service, self.client, self.endpoint_id) == "online"

        svc.wait_for(online, timeout, "the endpoint to come online", interval=0.5)
        return self.endpoint_id

    def start_bg(self, *extra: str) -> subprocess.Popen:
        """``start NAME [extra]`` in the background (its own session); output in a file."""
        (self.ep_dir / "daemon.pid").unlink(missing_ok=True)
        out = open(self.root / "endpoint.out", "a")
        self.proc = subprocess.Popen(
            self._cmd(["globus-compute-endpoint", "start", self.NAME, *extra]),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=self.home,
            start_new_session=True,
        )
        out.close()
        return self.proc

    def output(self) -> str:
        p = self.root / "endpoint.out"
        return p.read_text() if p.exists() else ""

    def kill9(self):
        """SIGKILL the whole session of the running endpoint (a crashed login node)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def status(service: PortService, client: dict, eid: str) -> str:
    import requests

    r = requests.post(
        f"{service.base}/auth/v2/oauth2/token",
        auth=(client["client_id"], client["client_secret"]),
        data={"grant_type": "client_credentials", "scope": svc.COMPUTE_SCOPE},
        timeout=10,
    )
    r.raise_for_status()
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    r = requests.get(f"{service.base}/v2/endpoints/{eid}/status", headers=headers, timeout=5)
    return r.json().get("status", "")


@pytest.fixture(scope="module")
def world():
    workdir = Path(tempfile.mkdtemp(prefix="gcrs-dup-ep-tests-"))
    vhost = svc.Vhost()
    db = svc.Database("sqlite", workdir)
    service = PortService(db, vhost, workdir)
    hosts: list[Host] = []
    ok = False
    try:
        service.start()
        client = service.create_client("dup-endpoint")
        yield service, client, hosts, workdir
        ok = True
    finally:
        for h in hosts:
            if not ok:
                for log in [h.root / "endpoint.out", *h.home.glob(".globus_compute/**/*.log")]:
                    if log.is_file():
                        print(f"\n==== {h.host}: {log.name}\n{log.read_text()[-4000:]}", file=sys.stderr)
            h.cleanup(keep_logs_in=None if ok else workdir)
        if not ok and service.log.exists():
            print(f"\n==== service.log\n{service.log.read_text()[-6000:]}", file=sys.stderr)
        service.stop()
        db.drop()
        vhost.delete()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"\nduplicate-endpoint test logs kept in {workdir}", file=sys.stderr)


def test_second_host_refused_until_stale_then_takeover_then_remote_stop(world):
    service, client, hosts, _ = world
    a, b, c = (Host(service, client, f"login-{x}") for x in "abc")
    hosts += [a, b, c]

    eid = a.start()
    # B: same endpoint id, another compute dir, another host name -> refused, exit 69, and
    # the message names the holding host and the way out.
    r = b.run_cli("start", b.NAME, "--endpoint-uuid", eid)
    text = r.stdout + r.stderr
    assert r.returncode == 69, text
    assert f"Endpoint {eid} is already running on host login-a" in text, text
    assert "stop --remote" in text and "--takeover" in text, text
    assert a.proc.poll() is None

    # A's login node crashes: its holder record stays until heartbeats are missed
    # (heartbeat_period 5 in config.yaml: 2 x 5 s + 10 s of slack).
    a.kill9()
    r = b.run_cli("start", b.NAME, "--endpoint-uuid", eid)
    assert r.returncode == 69, r.stdout + r.stderr
    deadline = time.monotonic() + 60
    while True:
        b.start_bg("--endpoint-uuid", eid)
        try:
            code = b.proc.wait(3)
        except subprocess.TimeoutExpired:
            break  # registered and running
        assert code == 69, b.output()
        assert time.monotonic() < deadline, "the dead holder never expired"
        time.sleep(2)
    svc.wait_for(lambda: status(service, client, eid) == "online", 30, "B online")

    # Now A is the newcomer: refused while B runs, accepted with --takeover.
    r = a.run_cli("start", a.NAME)
    assert r.returncode == 69 and "running on host login-b" in r.stdout + r.stderr, r
    a.start_bg("--takeover")
    svc.wait_for(
        lambda: "Endpoint ID" in a.output() or (a.ep_dir / "daemon.pid").exists(),
        30,
        "A to take over",
    )
    assert a.proc.poll() is None, a.output()

    # stop --remote from a third host that never ran the endpoint stops every instance.
    c.ep_dir.mkdir(parents=True, exist_ok=True)
    (c.ep_dir / "endpoint.json").write_text(json.dumps({"endpoint_id": eid}))
    if c.user:
        subprocess.run(["chown", "-R", c.user, str(c.home)], check=True)
    r = c.run_cli("stop", "--remote", c.NAME)
    assert r.returncode == 0, r.stdout + r.stderr
    for h in (a, b):
        try:
            h.proc.wait(60)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{h.host} still runs after stop --remote:\n{h.output()}")
    svc.wait_for(lambda: status(service, client, eid) == "offline", 30, "the endpoint offline")
    # The lock keeps it down for a while: a start anywhere says so and exits non-zero.
    r = b.run_cli("start", b.NAME, "--endpoint-uuid", eid)
    assert r.returncode == 69 and "locked" in (r.stdout + r.stderr), r


def test_start_fails_loudly_when_the_service_cannot_be_used(world):
    service, client, hosts, workdir = world
    d = Host(service, client, "login-d")
    hosts.append(d)
    # 1. No service at the configured address: exit 75 (EX_TEMPFAIL), network failure named.
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    d.env["GLOBUS_SDK_SERVICE_URL_COMPUTE"] = f"http://127.0.0.1:{closed}"
    r = d.run_cli("start", d.NAME)
    assert r.returncode == 75, r.stdout + r.stderr
    assert "Network failure; unable to register endpoint" in r.stdout + r.stderr
    d.env["GLOBUS_SDK_SERVICE_URL_COMPUTE"] = service.base
    assert not (d.ep_dir / "daemon.pid").exists()

    # 2. The service refuses the registration (the id belongs to another client): exit 69.
    other = service.create_client("someone-else")
    e = Host(service, other, "login-e")
    hosts.append(e)
    eid = e.start()
    e.stop()
    r = d.run_cli("start", d.NAME, "--endpoint-uuid", eid)
    assert r.returncode == 69, r.stdout + r.stderr
    assert "registered to another user" in r.stdout + r.stderr

    # 3. The service names a broker nobody answers at: registration succeeds, the first
    #    broker connection fails, start exits 75 saying so and never takes the PID file.
    service.stop()
    service.env["GCRS_ENDPOINT_AMQP_URL"] = "amqp://guest:guest@127.0.0.1:1/"
    try:
        service.start()
        t0 = time.monotonic()
        r = d.run_cli("start", d.NAME)
        took = time.monotonic() - t0
        text = r.stdout + r.stderr
        assert r.returncode == 75, text
        assert "cannot reach the message broker" in text, text
        assert not (d.ep_dir / "daemon.pid").exists()
        print(f"unreachable broker reported after {took:.1f} s")
    finally:
        service.stop()
        del service.env["GCRS_ENDPOINT_AMQP_URL"]
        service.start()
