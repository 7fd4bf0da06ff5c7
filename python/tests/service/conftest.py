"""Fixtures for the gc-service end-to-end tests.

Everything is real: the gc-service binary (``GCRS_SERVICE_BIN``, default
``$CARGO_TARGET_DIR/debug/gc-service``), RabbitMQ on 127.0.0.1:5672 (guest/guest; one fresh
vhost per service instance), PostgreSQL on 127.0.0.1:5432 (user postgres; one fresh database
per instance) or a SQLite file, the unmodified SDK, and the unmodified upstream
``globus-compute-endpoint`` 4.19.0 -- run as a throwaway unprivileged user when the tests run
as root (a root endpoint would be "privileged", ENDPOINT.md §4.1).

The SDK's ``local`` environment and the endpoint's ``local_compute_services`` both mean
http://localhost:5000, so one service runs at a time; a lock file serialises test runs that
need the port.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[3]
VENV_BIN = Path(sys.executable).parent
BASE = "http://127.0.0.1:5000"
AMQP_HOST = "amqp://guest:guest@127.0.0.1:5672"
PG_ADMIN = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c"]


def service_bin() -> str:
    explicit = os.environ.get("GCRS_SERVICE_BIN")
    if explicit:
        return explicit
    target = os.environ.get("CARGO_TARGET_DIR") or str(REPO / "target")
    return str(Path(target) / "debug" / "gc-service")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(pred, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


class Vhost:
    def __init__(self):
        self.name = f"gcrs-svc-{uuid.uuid4().hex[:10]}"
        _rabbitmqctl("add_vhost", self.name)
        _rabbitmqctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")
        self.url = f"{AMQP_HOST}/{self.name}"

    def delete(self):
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", self.name], capture_output=True, timeout=60)


class Database:
    def __init__(self, kind: str, workdir: Path):
        self.kind = kind
        if kind == "sqlite":
            self.url = f"sqlite://{workdir}/gc-service.db"
            self.name = None
        else:
            self.name = f"gcrs_svc_{uuid.uuid4().hex[:10]}"
            subprocess.run([*PG_ADMIN, f"CREATE DATABASE {self.name}"], check=True, timeout=60)
            self.url = f"postgres://postgres@127.0.0.1:5432/{self.name}"

    def drop(self):
        if self.name:
            subprocess.run(
                [*PG_ADMIN, f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)"], timeout=60
            )


class Service:
    """A gc-service process on 127.0.0.1:5000."""

    def __init__(self, db: Database, vhost: Vhost, workdir: Path):
        self.db = db
        self.vhost = vhost
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.log = workdir / "service.log"
        self.env = dict(os.environ, GCRS_DATABASE_URL=db.url, GCRS_LOG="info,sqlx=warn,lapin=warn")

    def admin(self, *args: str) -> str:
        r = subprocess.run(
            [service_bin(), *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        if r.returncode != 0:
            raise AssertionError(f"gc-service {' '.join(args)} failed: {r.stderr}")
        return r.stdout

    def create_client(self, name: str) -> dict:
        return json.loads(self.admin("client", "create", "--name", name, "--json"))

    def start(self):
        logf = open(self.log, "a")
        self.proc = subprocess.Popen(
            [service_bin(), "serve", "--amqp-url", self.vhost.url, "--uep-start-timeout", "60"],
            env=self.env,
            stdout=logf,
            stderr=subprocess.STDOUT,
        )
        logf.close()

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"gc-service exited: {self.log.read_text()[-3000:]}")
            try:
                return requests.get(f"{BASE}/v2/version", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_for(ready, 30, "gc-service to answer")

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


COMPUTE_SCOPE = "https://auth.globus.org/scopes/facd7ccc-c5f4-42aa-916b-a0e270e2c2a9/all"


def get_token(client: dict) -> str:
    r = requests.post(
        f"{BASE}/auth/v2/oauth2/token",
        auth=(client["client_id"], client["client_secret"]),
        data={"grant_type": "client_credentials", "scope": COMPUTE_SCOPE},
        timeout=10,
    )
    r.raise_for_status()
    return r.json()["access_token"]


class UpstreamEndpoint:
    """The unmodified upstream endpoint, registered with our service, thread-pool engine."""

    NAME = "gcrs-svc-test"

    def __init__(self, client: dict, config_extra: str = ""):
        self.client = client
        self.root = Path(tempfile.mkdtemp(prefix="gcrs-svc-ep-"))
        self.root.chmod(0o755)
        self.home = self.root / "home"
        self.home.mkdir()
        self.user = None
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            self.user = f"gcrs{uuid.uuid4().hex[:8]}"
            subprocess.run(
                ["useradd", "-M", "-d", str(self.home), "-s", "/bin/sh", self.user],
                check=True,
                timeout=30,
            )
            shutil.chown(self.home, self.user)
            self.prefix = ["runuser", "-u", self.user, "--"]
        self.env = {
            "HOME": str(self.home),
            "PATH": f"{VENV_BIN}:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "GLOBUS_SDK_ENVIRONMENT": "local",
            "GLOBUS_SDK_SERVICE_URL_AUTH": "http://localhost:5000/auth/",
            "GLOBUS_COMPUTE_CLIENT_ID": client["client_id"],
            "GLOBUS_COMPUTE_CLIENT_SECRET": client["client_secret"],
        }
        self.ep_dir = self.home / ".globus_compute" / self.NAME
        self._run(["globus-compute-endpoint", "configure", self.NAME])
        (self.ep_dir / "config.yaml").write_text(
            "display_name: gcrs service test\n"
            "local_compute_services: true\n"
            "heartbeat_period: 5\n" + config_extra
        )
        (self.ep_dir / "user_config_template.yaml.j2").write_text(
            "heartbeat_period: 5\n"
            "idle_heartbeats_soft: 12\n"
            "idle_heartbeats_hard: 120\n"
            "engine:\n"
            "  type: ThreadPoolEngine\n"
            "  max_workers: 4\n"
        )
        (self.ep_dir / "user_config_schema.json").unlink(missing_ok=True)
        if self.user:
            subprocess.run(["chown", "-R", self.user, str(self.home)], check=True)
        self.proc: subprocess.Popen | None = None
        self.endpoint_id: str | None = None

    def _cmd(self, argv: list[str]) -> list[str]:
        return [*self.prefix, "env", "-i", *(f"{k}={v}" for k, v in self.env.items()), *argv]

    def _run(self, argv: list[str]) -> None:
        r = subprocess.run(self._cmd(argv), capture_output=True, text=True, timeout=120, cwd=self.home)
        if r.returncode != 0:
            raise AssertionError(f"{argv} failed: {r.stdout}\n{r.stderr}")

    def start(self, timeout: float = 60) -> str:
        # A MEP that had to be killed leaves its PID file behind, and a young PID file makes
        # the next start refuse to run (exit 73).
        (self.ep_dir / "daemon.pid").unlink(missing_ok=True)
        self.log = open(self.root / "endpoint.out", "a")
        self.proc = subprocess.Popen(
            self._cmd(["globus-compute-endpoint", "start", self.NAME]),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=self.home,
            start_new_session=True,
        )
        ep_json = self.ep_dir / "endpoint.json"

        def registered():
            if self.proc.poll() is not None:
                raise AssertionError(f"endpoint exited: {(self.root / 'endpoint.out').read_text()}")
            return ep_json.exists() and json.loads(ep_json.read_text() or "{}").get("endpoint_id")

        self.endpoint_id = wait_for(registered, timeout, "the endpoint to register")
        headers = {"Authorization": f"Bearer {get_token(self.client)}"}

        def online():
            registered()  # fails fast if the endpoint exited
            r = requests.get(f"{BASE}/v2/endpoints/{self.endpoint_id}/status", headers=headers, timeout=5)
            return r.status_code == 200 and r.json()["status"] == "online"

        wait_for(online, timeout, "the endpoint to come online", interval=0.5)
        return self.endpoint_id

    def processes(self) -> list[int]:
        if not self.user:
            return []
        r = subprocess.run(["ps", "-u", self.user, "-o", "pid="], capture_output=True, text=True)
        return [int(p) for p in r.stdout.split()]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        # User endpoints run in their own sessions; end whatever the throwaway user still runs.
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc = None

    def cleanup(self, keep_logs_in: Path | None = None):
        self.stop()
        if self.user:
            wait_for(lambda: not self.processes(), 10, "endpoint processes to exit")
            subprocess.run(["userdel", self.user], capture_output=True, timeout=30)
        if keep_logs_in:
            for log in [self.root / "endpoint.out", *self.home.glob(".globus_compute/**/*.log")]:
                if log.is_file():
                    dest = keep_logs_in / log.relative_to(self.root).as_posix().replace("/", "_")
                    shutil.copyfile(log, dest)
        shutil.rmtree(self.root, ignore_errors=True)


def endpoint_bin() -> str:
    """OUR ``globus-compute-endpoint``: ``GCRS_ENDPOINT_BIN``, default
    ``$CARGO_TARGET_DIR/debug/globus-compute-endpoint``."""
    explicit = os.environ.get("GCRS_ENDPOINT_BIN")
    if explicit:
        return explicit
    target = os.environ.get("CARGO_TARGET_DIR") or str(REPO / "target")
    return str(Path(target) / "debug" / "globus-compute-endpoint")


class OurEndpoint(UpstreamEndpoint):
    """The same fixture running our binary instead of upstream's. The binary is copied next
    to the throwaway user's home so that user can execute it."""

    NAME = "gcrs-our-ep"

    def _cmd(self, argv: list[str]) -> list[str]:
        if argv and argv[0] == "globus-compute-endpoint":
            exe = self.root / "bin" / "globus-compute-endpoint"
            if not exe.exists():
                exe.parent.mkdir(exist_ok=True)
                shutil.copy2(endpoint_bin(), exe)
                exe.parent.chmod(0o755)
                exe.chmod(0o755)
            argv = [str(exe), *argv[1:]]
        return super()._cmd(argv)

    def run_cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            self._cmd(["globus-compute-endpoint", *args]),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.home,
        )


class Site:
    """A running service with one client and one upstream endpoint owned by that client."""

    def __init__(self, service: Service, client: dict, endpoint: UpstreamEndpoint):
        self.service = service
        self.client = client
        self.endpoint = endpoint

    @property
    def endpoint_id(self) -> str:
        return self.endpoint.endpoint_id


def _sdk_env(client: dict, user_dir: Path) -> dict:
    return {
        "GLOBUS_SDK_ENVIRONMENT": "local",
        "GLOBUS_SDK_SERVICE_URL_AUTH": "http://localhost:5000/auth/",
        "GLOBUS_COMPUTE_CLIENT_ID": client["client_id"],
        "GLOBUS_COMPUTE_CLIENT_SECRET": client["client_secret"],
        "GLOBUS_COMPUTE_USER_DIR": str(user_dir),
    }


@pytest.fixture(scope="package", params=["sqlite", "postgres"])
def site(request, port_5000):
    """Service (on the parametrised database) + client + registered upstream endpoint; the
    SDK in this process is pointed at the service through environment variables. Logs are
    kept in /tmp/gcrs-svc-tests-* when a test failed."""
    workdir = Path(tempfile.mkdtemp(prefix=f"gcrs-svc-tests-{request.param}-"))
    failed_before = request.session.testsfailed
    vhost = Vhost()
    db = Database(request.param, workdir)
    service = Service(db, vhost, workdir)
    endpoint = None
    saved = dict(os.environ)
    try:
        service.start()
        client = service.create_client("e2e")
        os.environ.update(_sdk_env(client, workdir / "sdk"))
        from globus_compute_sdk import Executor

        Executor._default_task_group_id = None
        endpoint = UpstreamEndpoint(client)
        endpoint.start()
        yield Site(service, client, endpoint)
    finally:
        failed = request.session.testsfailed > failed_before
        if endpoint:
            endpoint.cleanup(keep_logs_in=workdir if failed else None)
        service.stop()
        os.environ.clear()
        os.environ.update(saved)
        db.drop()
        vhost.delete()
        if failed:
            print(f"\ngc-service test logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
