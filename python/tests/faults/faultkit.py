"""Helpers of the fault-injection tests: a private RabbitMQ node, a stallable TCP proxy, and
a site (gc-service + our endpoint as a throwaway user) wired to them.

Everything is real. The system RabbitMQ on 127.0.0.1:5672 is never touched: each test module
starts its own node (``gcrs-fault-<random>@localhost``) on free loopback ports, with its own
data directory and Erlang cookie, and stops it at the end. The service and endpoint helpers are
those of ``tests/service/conftest.py``; the port-5000 lock is the session fixture of
``tests/conftest.py``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path


_spec = importlib.util.spec_from_file_location(
    "gcrs_service_conftest", Path(__file__).resolve().parents[1] / "service" / "conftest.py"
)
if "gcrs_service_conftest" in sys.modules:
    svc = sys.modules["gcrs_service_conftest"]
else:
    svc = importlib.util.module_from_spec(_spec)
    sys.modules["gcrs_service_conftest"] = svc
    _spec.loader.exec_module(svc)

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def endpoint_bin() -> str:
    explicit = os.environ.get("GCRS_ENDPOINT_BIN")
    if explicit:
        return explicit
    target = os.environ.get("CARGO_TARGET_DIR") or str(svc.REPO / "target")
    return str(Path(target) / "debug" / "globus-compute-endpoint")


# --------------------------------------------------------------------------- private RabbitMQ


class PrivateRabbit:
    """One RabbitMQ node of our own, listening on 127.0.0.1 only (guest allowed from loopback,
    no plugins). ``stop``/``kill`` + ``start`` keep its data directory, so durable queues and
    persistent messages survive a restart as they would in production."""

    def __init__(self, workdir: Path):
        self.dir = workdir / "rabbit"
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"gcrs-fault-{uuid.uuid4().hex[:8]}@localhost"
        for sub in ("home", "mnesia", "log"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "loopback_users.guest = true\n"
            # A 2-core CI machine is slow to answer; do not let the memory or disk alarms
            # of a small /tmp stop publishers in the middle of a test.
            "disk_free_limit.absolute = 50MB\n"
        )
        (self.dir / "enabled_plugins").write_text("[].\n")
        self.env = dict(
            os.environ,
            HOME=str(self.dir / "home"),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.dir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.dir / "log"),
            RABBITMQ_CONFIG_FILE=str(self.dir / "rabbitmq.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.dir / "enabled_plugins"),
        )
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    def ctl(self, *args: str, timeout: float = 60) -> str:
        r = subprocess.run(
            [str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, "-q", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if r.returncode != 0:
            raise AssertionError(f"rabbitmqctl {' '.join(args)}: {r.stdout}{r.stderr}")
        return r.stdout

    def start(self):
        out = open(self.dir / "server.out", "a")
        self.proc = subprocess.Popen(
            [str(RABBIT_BIN / "rabbitmq-server")],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"private RabbitMQ exited: {(self.dir / 'server.out').read_text()[-3000:]}"
                )
            r = subprocess.run(
                [str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, "-q", "await_startup", "--timeout", "5"],
                env=self.env,
                capture_output=True,
                timeout=60,
            )
            if r.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise AssertionError("private RabbitMQ did not start within 120 s")
            time.sleep(0.5)

    def add_vhost(self) -> str:
        """A fresh vhost; returns its ``amqp://`` URL."""
        name = f"gcrs-fault-{uuid.uuid4().hex[:8]}"
        self.ctl("add_vhost", name)
        self.ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{name}"

    def _wait_exit(self, timeout: float):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self):
        """Graceful stop (what a package upgrade or ``systemctl restart`` does)."""
        if self.proc and self.proc.poll() is None:
            subprocess.run(
                [str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, "-q", "stop"],
                env=self.env,
                capture_output=True,
                timeout=60,
            )
            self._wait_exit(60)
        self.proc = None

    def kill(self):
        """``kill -9`` of the whole node (power cut of the broker host)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self._wait_exit(10)
        self.proc = None

    def restart(self, hard: bool = False):
        self.kill() if hard else self.stop()
        self.start()
        self.restarts += 1

    def queue_depths(self, vhost_url: str) -> dict[str, tuple[int, int]]:
        """``{queue: (ready, unacked)}`` of the vhost of ``vhost_url``."""
        vhost = vhost_url.rsplit("/", 1)[1]
        out = self.ctl("list_queues", "-p", vhost, "name", "messages_ready", "messages_unacknowledged")
        depths = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1].isdigit():
                depths[parts[0]] = (int(parts[1]), int(parts[2]))
        return depths


# --------------------------------------------------------------------------- TCP proxy


class TcpProxy:
    """A loopback TCP proxy (asyncio, in its own thread) that can stall and drop connections.

    * ``stall(True)``: no byte moves in either direction on any connection, existing or new
      (a black-holed network path); ``stall(False)`` lets the held bytes through again.
    * ``drop()``: resets every open connection (a NAT or firewall forgetting its state).
    """

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self._open = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0
        self.stalls = 0
        self.drops = 0
        started = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self._open.set()
            self.server = self.loop.run_until_complete(
                asyncio.start_server(self._client, "127.0.0.1", self.port)
            )
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="gcrs-fault-proxy", daemon=True)
        self.thread.start()
        assert started.wait(10), "proxy did not start"

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await self._open.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def _client(self, c_reader, c_writer):
        self.connections += 1
        try:
            u_reader, u_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            c_writer.close()
            return
        self._writers.update((c_writer, u_writer))
        try:
            await asyncio.gather(self._pipe(c_reader, u_writer), self._pipe(u_reader, c_writer))
        finally:
            self._writers.discard(c_writer)
            self._writers.discard(u_writer)

    def _call(self, fn):
        done = threading.Event()

        def wrapper():
            fn()
            done.set()

        self.loop.call_soon_threadsafe(wrapper)
        assert done.wait(10)

    def stall(self, on: bool):
        if on:
            self.stalls += 1
        self._call(self._open.clear if on else self._open.set)

    def drop(self):
        def reset_all():
            for w in list(self._writers):
                sock = w.get_extra_info("socket")
                if sock is not None:
                    # SO_LINGER 0: close with a RST, as a middlebox that forgot the flow would.
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                    except OSError:
                        pass
                w.transport.abort()
            self._writers.clear()

        self.drops += 1
        self._call(reset_all)

    def close(self):
        def shut():
            self._open.set()
            self.server.close()
            for w in list(self._writers):
                w.transport.abort()

        self._call(shut)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


# --------------------------------------------------------------------------- our endpoint


class FaultEndpoint(svc.UpstreamEndpoint):
    """Our ``globus-compute-endpoint`` as a throwaway user (copied where that user can run
    it), a ThreadPoolEngine user endpoint with ``max_workers`` Python workers."""

    NAME = "gcrs-fault-ep"

    def __init__(self, client: dict, max_workers: int = 4):
        super().__init__(client)
        (self.ep_dir / "user_config_template.yaml.j2").write_text(
            "heartbeat_period: 5\n"
            "idle_heartbeats_soft: 120\n"
            "idle_heartbeats_hard: 1200\n"
            "engine:\n"
            "  type: ThreadPoolEngine\n"
            f"  max_workers: {max_workers}\n"
        )
        # Tasks leave marker files here (see the tests' ``hold`` function).
        self.scratch = self.root / "scratch"
        self.scratch.mkdir()
        if self.user:
            subprocess.run(["chown", "-R", self.user, str(self.home), str(self.scratch)], check=True)

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

    def _pids_matching(self, needle: str) -> list[int]:
        pids = []
        for pid in self.processes():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if needle.encode() in cmd:
                pids.append(pid)
        return pids

    def mep_pid(self) -> int:
        return int((self.ep_dir / "daemon.pid").read_text().split()[0])

    def uep_pids(self) -> list[int]:
        return self._pids_matching("_start-user-endpoint")

    def worker_pids(self) -> list[int]:
        return self._pids_matching("globus_compute_rs_worker")

    def kill_mep_and_restart(self, wait_for_old_ueps: bool):
        """``kill -9`` of the core endpoint, then ``globus-compute-endpoint start`` again. With
        ``wait_for_old_ueps``, the start waits until the user endpoints of the killed one have
        noticed their parent is gone and exited (as upstream's do)."""
        old = self.mep_pid()
        os.kill(old, signal.SIGKILL)
        if self.proc:
            self.proc.wait(15)
        self.proc = None
        if wait_for_old_ueps:
            svc.wait_for(lambda: not self.uep_pids(), 60, "the old user endpoints to exit")
        self.start(timeout=60)

        def new_pid():
            try:
                return self.mep_pid() != old
            except (OSError, ValueError, IndexError):
                return False

        svc.wait_for(new_pid, 30, "a new core endpoint PID file")


class FaultSite:
    """Service (SQLite) on a vhost of the private node, a client, our endpoint."""

    def __init__(self, rabbit: PrivateRabbit, workdir: Path, endpoint_amqp_url=None):
        self.rabbit = rabbit
        self.workdir = workdir
        self.amqp_url = rabbit.add_vhost()
        self.db = svc.Database("sqlite", workdir)
        vhost = type("V", (), {"url": self.amqp_url})()
        self.service = svc.Service(self.db, vhost, workdir)
        if endpoint_amqp_url:
            self.service.env["GCRS_ENDPOINT_AMQP_URL"] = endpoint_amqp_url(self.amqp_url)
        self.endpoint: FaultEndpoint | None = None
        self.client = None

    def kill_service_and_restart(self):
        self.service.stop(sig=signal.SIGKILL)
        self.service.start()
