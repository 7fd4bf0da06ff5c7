#!/usr/bin/env python3
"""Our endpoint beside the unmodified upstream endpoint 4.19.0, in one run, against one build
of our gc-service, with tasks submitted by the unmodified SDK; writes JSON (--out) and prints a
table.

For each engine (``ThreadPoolEngine`` and ``ProcessPoolEngine``, ``max_workers: 2`` each) and
each implementation (``upstream`` = ``globus-compute-endpoint`` from the venv, ``ours`` = the
release ``globus-compute-endpoint`` of this repository), a fresh gc-service (SQLite file, fresh
RabbitMQ vhost) is started, a client is created, and the endpoint is configured and started as a
throwaway unprivileged Linux user (a root endpoint would be a privileged multi-user endpoint).
Both run the same ``config.yaml`` and the same user endpoint template. Then:

cold      ``--cold-runs`` user endpoints are started from scratch, each by one task submitted
          with its own ``user_endpoint_config`` (so each is a new user endpoint of the same
          running endpoint):
            * ``start_to_heartbeat_ms`` -- from gc-service publishing the start command
              (``user_endpoints.start_sent_at``) to gc-service receiving that user endpoint's
              first heartbeat (``user_endpoints.last_heartbeat``), both stamped by the service's
              clock. Covers broker → MEP, MEP handling (template render, fork, exec), user
              endpoint start-up (config, engine, AMQP connections), heartbeat → broker → service.
            * ``first_result_ms`` -- from the SDK's ``Client.batch_run`` (which returns once the
              service has seen the heartbeat) to the result arriving in the task group's AMQP
              result queue (adds task delivery, worker start and the result's way back).
          Each cold user endpoint is then ended with SIGTERM.
latency   on the warm user endpoint, after a warm-up batch: ``--latency-n`` sequential
          round trips of one task submitted with ``Client.batch_run`` and taken from the task
          group's AMQP result queue with pika (``latency_ms``); and ``--executor-latency-n``
          round trips of ``Executor.submit(noop).result()`` (``latency_executor_ms``; off by
          default: the Executor allows itself 8 small API calls per 16 s and matches results
          to futures on a 0.5 s timer, so it measures the SDK, not the endpoint).
throughput ``--tasks`` ``Executor.submit(noop)`` calls (``batch_size`` ``--batch-size``,
          client-side API throttling off) timed from the first submit to the last result
          received (future completion callbacks), after a warm-up batch.
queued    the same number of tasks submitted while the user endpoint and its workers are
          stopped (SIGSTOP); the clock runs from SIGCONT to the last result received: the
          endpoint's drain rate without the SDK's submit path in the way.
endpoint-only  as ``queued``, but gc-service is stopped (SIGSTOP) before the UEP continues,
          and the clock stops when all results sit in the broker's ``results`` queue: the
          endpoint (UEP, workers, its AMQP traffic) without the service and the SDK.
idle      ``--idle`` seconds without tasks, then VmRSS (``/proc/PID/status``) and PSS
          (``/proc/PID/smaps_rollup``) of the endpoint (MEP) process, the user endpoint (UEP)
          process and every process below the UEP (Python workers; for upstream's
          ProcessPoolEngine the multiprocessing children).

Needs: root (``useradd``/``runuser``), RabbitMQ on 127.0.0.1:5672 (guest/guest),
``rabbitmqctl``, port 5000 (the SDK's ``local`` environment; held with a flock on
/tmp/gcrs-port-5000.lock for the whole run), the project venv (the SDK and the upstream
endpoint), the release build:

  CARGO_TARGET_DIR=/root/.cache/gcrs-target cargo build --release -p gc-endpoint -p gc-service
  .venv/bin/python bench/endpoint/bench.py --out bench/endpoint/results.json
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
BASE = "http://127.0.0.1:5000"
AMQP_HOST = "amqp://guest:guest@127.0.0.1:5672"
LOCK_FILE = "/tmp/gcrs-port-5000.lock"
ENGINES = ("ThreadPoolEngine", "ProcessPoolEngine")
IMPLS = ("upstream", "ours")

# The task: defined in a "__main__" namespace so the SDK ships it by value.
_NS = {"__name__": "__main__"}
exec("def noop():\n    return None\n", _NS)
noop = _NS["noop"]


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def wait_for(pred, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


# ---------------------------------------------------------------- processes and memory


def proc_table() -> dict[int, int]:
    """pid -> ppid of every process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        # comm may hold spaces and parentheses; the fields after the last ')' are fixed.
        out[int(d)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    return out


def children(pid: int, table: dict[int, int] | None = None) -> list[int]:
    table = table if table is not None else proc_table()
    return sorted(p for p, pp in table.items() if pp == pid)


def descendants(pid: int) -> list[int]:
    table = proc_table()
    out, todo = [], [pid]
    while todo:
        kids = children(todo.pop(), table)
        out.extend(kids)
        todo.extend(kids)
    return sorted(out)


def memory(pid: int) -> dict:
    info = {"pid": pid}
    try:
        info["cmd"] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:160]
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                info["rss_kib"] = int(line.split()[1])
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    info["pss_kib"] = int(line.split()[1])
        except OSError:
            pass
    except OSError as e:
        info["error"] = str(e)
    return info


def cpu_times() -> dict[int, tuple[str, float]]:
    """pid -> (command name, user+system CPU seconds) of every process."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        f = stat[stat.rindex(")") + 2 :].split()
        out[int(d)] = (comm, (int(f[11]) + int(f[12])) / tick)
    return out


def cpu_split(before: dict, after: dict, roles: dict[int, str]) -> dict[str, float]:
    """CPU seconds spent between two cpu_times() snapshots, by role (pids in roles) or by
    command name; entries under 0.05 s are dropped."""
    spent: dict[str, float] = {}
    for pid, (comm, t) in after.items():
        dt = t - before.get(pid, (comm, 0.0))[1] if pid in before else t
        if dt <= 0:
            continue
        key = roles.get(pid, comm)
        spent[key] = spent.get(key, 0.0) + dt
    return {k: round(v, 2) for k, v in sorted(spent.items(), key=lambda kv: -kv[1]) if v >= 0.05}


def percentile(xs: list[float], p: float) -> float:
    s = sorted(xs)
    k = (len(s) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# ---------------------------------------------------------------- service


class Service:
    """gc-service on 127.0.0.1:5000 with a fresh vhost and SQLite file."""

    def __init__(self, binary: str, workdir: Path, endpoint_url_query: str | None = None):
        self.binary = binary
        self.endpoint_url_query = endpoint_url_query
        self.vhost = f"gcrs-epbench-{uuid.uuid4().hex[:8]}"
        for args in (["add_vhost", self.vhost], ["set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*"]):
            subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)
        self.amqp = f"{AMQP_HOST}/{self.vhost}"
        self.db_path = workdir / f"service-{uuid.uuid4().hex[:6]}.db"
        self.env = dict(os.environ, GCRS_DATABASE_URL=f"sqlite://{self.db_path}", GCRS_LOG="warn")
        self.log = workdir / "service.log"
        self.proc: subprocess.Popen | None = None

    def start(self):
        wait_for(lambda: not port_open(5000), 60, "port 5000 to be free", 0.2)
        with open(self.log, "a") as logf:
            extra = []
            if self.endpoint_url_query:
                # Handed to endpoints (and SDK result watchers) in their connection URLs.
                extra = ["--endpoint-amqp-url", f"{self.amqp}?{self.endpoint_url_query}"]
            self.proc = subprocess.Popen(
                [self.binary, "serve", "--amqp-url", self.amqp, "--uep-start-timeout", "120", *extra],
                env=self.env,
                stdout=logf,
                stderr=subprocess.STDOUT,
            )

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"gc-service exited; see {self.log}")
            try:
                return requests.get(f"{BASE}/v2/version", timeout=1).ok
            except requests.RequestException:
                return False

        wait_for(ready, 30, "gc-service")

    def create_client(self) -> dict:
        out = subprocess.run(
            [self.binary, "client", "create", "--name", "epbench", "--json"],
            env=self.env, check=True, capture_output=True, text=True, timeout=60,
        ).stdout
        return json.loads(out)

    def uep_row(self, uep_config: dict) -> dict | None:
        """The user_endpoints row whose user options equal uep_config."""
        con = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            rows = con.execute(
                "SELECT id, user_opts, start_sent_at, last_heartbeat, active, error FROM user_endpoints"
            ).fetchall()
        finally:
            con.close()
        for rid, opts, sent, hb, active, err in rows:
            if json.loads(opts) == uep_config:
                return {"id": rid, "start_sent_at": sent, "last_heartbeat": hb, "active": active, "error": err}
        return None

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", self.vhost], capture_output=True, timeout=60)


# ---------------------------------------------------------------- endpoint


class Endpoint:
    """One endpoint (upstream's or ours), run as a throwaway unprivileged user."""

    NAME = "epbench"

    def __init__(self, impl: str, engine: str, client: dict, our_bin: str, workdir: Path):
        self.impl = impl
        self.root = Path(tempfile.mkdtemp(prefix=f"gcrs-epbench-{impl}-", dir=workdir))
        self.root.chmod(0o755)
        self.home = self.root / "home"
        self.home.mkdir()
        self.user = f"gcrsb{uuid.uuid4().hex[:8]}"
        subprocess.run(["useradd", "-M", "-d", str(self.home), "-s", "/bin/sh", self.user], check=True, timeout=30)
        path = f"{VENV_BIN}:/usr/bin:/bin"
        if impl == "ours":
            # A copy the unprivileged user can execute (the build directory may be under /root).
            bindir = self.root / "bin"
            bindir.mkdir()
            shutil.copy2(our_bin, bindir / "globus-compute-endpoint")
            bindir.chmod(0o755)
            (bindir / "globus-compute-endpoint").chmod(0o755)
            path = f"{bindir}:{path}"
            self.exe = str(bindir / "globus-compute-endpoint")
        else:
            self.exe = str(VENV_BIN / "globus-compute-endpoint")
        self.env = {
            "HOME": str(self.home),
            "PATH": path,
            "LANG": "C.UTF-8",
            "GLOBUS_SDK_ENVIRONMENT": "local",
            "GLOBUS_SDK_SERVICE_URL_AUTH": "http://localhost:5000/auth/",
            "GLOBUS_COMPUTE_CLIENT_ID": client["client_id"],
            "GLOBUS_COMPUTE_CLIENT_SECRET": client["client_secret"],
        }
        shutil.chown(self.home, self.user)
        self.ep_dir = self.home / ".globus_compute" / self.NAME
        r = subprocess.run(self._cmd(["configure", self.NAME]), capture_output=True, text=True, timeout=120, cwd=self.home)
        if r.returncode != 0:
            raise RuntimeError(f"{impl} configure failed: {r.stdout}\n{r.stderr}")
        (self.ep_dir / "config.yaml").write_text(
            "display_name: gcrs endpoint benchmark\nlocal_compute_services: true\nheartbeat_period: 5\n"
        )
        # A long UEP heartbeat period keeps the first heartbeat's arrival time in the service's
        # database until it is read (cold start), and the idle limits keep the warm UEP alive.
        (self.ep_dir / "user_config_template.yaml.j2").write_text(
            "heartbeat_period: 30\n"
            "idle_heartbeats_soft: 100\n"
            "idle_heartbeats_hard: 1000\n"
            "engine:\n"
            f"  type: {engine}\n"
            "  max_workers: 2\n"
        )
        (self.ep_dir / "user_config_schema.json").unlink(missing_ok=True)
        subprocess.run(["chown", "-R", self.user, str(self.home)], check=True)
        self.proc: subprocess.Popen | None = None
        self.endpoint_id: str | None = None

    def _cmd(self, args: list[str]) -> list[str]:
        return ["runuser", "-u", self.user, "--", "env", "-i", *(f"{k}={v}" for k, v in self.env.items()), self.exe, *args]

    def start(self, token: str) -> float:
        """Starts the endpoint; returns seconds from launch to the service reporting it online."""
        t0 = time.perf_counter()
        self.logf = open(self.root / "endpoint.out", "a")
        self.proc = subprocess.Popen(
            self._cmd(["start", self.NAME]), stdout=self.logf, stderr=subprocess.STDOUT,
            cwd=self.home, start_new_session=True,
        )
        ep_json = self.ep_dir / "endpoint.json"

        def registered():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.impl} endpoint exited: {(self.root / 'endpoint.out').read_text()}")
            try:
                return ep_json.exists() and json.loads(ep_json.read_text() or "{}").get("endpoint_id")
            except json.JSONDecodeError:
                return None

        self.endpoint_id = wait_for(registered, 120, f"{self.impl} endpoint to register")
        headers = {"Authorization": f"Bearer {token}"}

        def online():
            registered()
            r = requests.get(f"{BASE}/v2/endpoints/{self.endpoint_id}/status", headers=headers, timeout=5)
            return r.status_code == 200 and r.json()["status"] == "online"

        wait_for(online, 120, f"{self.impl} endpoint online")
        return time.perf_counter() - t0

    def mep_pid(self) -> int:
        return int((self.ep_dir / "daemon.pid").read_text())

    def ueps(self) -> list[int]:
        return children(self.mep_pid())

    def user_pids(self) -> list[int]:
        r = subprocess.run(["ps", "-u", self.user, "-o", "pid="], capture_output=True, text=True)
        return [int(p) for p in r.stdout.split()]

    def stop_uep(self, pid: int):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            wait_for(lambda: pid not in self.ueps(), 30, f"UEP {pid} to end", 0.1)
        except RuntimeError:
            for p in [pid, *descendants(pid)]:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def cleanup(self, keep: Path | None):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(25)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        for pid in self.user_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            wait_for(lambda: not self.user_pids(), 10, "endpoint processes to exit", 0.2)
        except RuntimeError:
            pass
        subprocess.run(["userdel", self.user], capture_output=True, timeout=30)
        if keep:
            for f in [self.root / "endpoint.out", *self.home.glob(".globus_compute/**/*.log")]:
                if f.is_file():
                    shutil.copyfile(f, keep / f"{self.impl}-{f.relative_to(self.root).as_posix().replace('/', '_')}")
        shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------- measurements


def sdk_env(client: dict, user_dir: Path) -> dict:
    return {
        "GLOBUS_SDK_ENVIRONMENT": "local",
        "GLOBUS_SDK_SERVICE_URL_AUTH": "http://localhost:5000/auth/",
        "GLOBUS_COMPUTE_CLIENT_ID": client["client_id"],
        "GLOBUS_COMPUTE_CLIENT_SECRET": client["client_secret"],
        "GLOBUS_COMPUTE_USER_DIR": str(user_dir),
    }


def get_token(client: dict) -> str:
    r = requests.post(
        f"{BASE}/auth/v2/oauth2/token",
        auth=(client["client_id"], client["client_secret"]),
        data={"grant_type": "client_credentials",
              "scope": "https://auth.globus.org/scopes/facd7ccc-c5f4-42aa-916b-a0e270e2c2a9/all"},
        timeout=10,
    )
    r.raise_for_status()
    return r.json()["access_token"]


def measure_cold(ep: Endpoint, svc: Service, runs: int) -> dict:
    import pika
    from globus_compute_sdk import Client

    c = Client()
    fid = c.register_function(noop)
    amqp = c.get_result_amqp_url()
    conn = pika.BlockingConnection(pika.URLParameters(amqp["connection_url"]))
    ch = conn.channel()
    samples = []
    for i in range(runs):
        cfg = {"bench_cold_run": i}
        before = set(ep.ueps())
        b = c.create_batch(user_endpoint_config=cfg, create_websocket_queue=True)
        b.add(fid)
        t0 = time.perf_counter()
        tg = c.batch_run(ep.endpoint_id, b)["task_group_id"]
        for method, _props, _body in ch.consume(f"{amqp['queue_prefix']}{tg}", inactivity_timeout=180):
            if method is None:
                raise RuntimeError("no result from a cold user endpoint within 180 s")
            ch.basic_ack(method.delivery_tag)
            break
        first_result = time.perf_counter() - t0
        ch.cancel()
        row = svc.uep_row(cfg)
        new = [p for p in ep.ueps() if p not in before]
        sample = {"first_result_ms": round(first_result * 1000, 1)}
        if row and row["start_sent_at"] and row["last_heartbeat"]:
            sample["start_to_heartbeat_ms"] = round((row["last_heartbeat"] - row["start_sent_at"]) * 1000, 1)
        samples.append(sample)
        log(f"  cold run {i}: {sample}")
        for pid in new:
            ep.stop_uep(pid)
    conn.close()
    out = {"runs": samples}
    for key in ("start_to_heartbeat_ms", "first_result_ms"):
        vals = [s[key] for s in samples if key in s]
        if vals:
            out[f"{key}_median"] = round(statistics.median(vals), 1)
            out[f"{key}_min"] = min(vals)
    return out


def roles_of(ep: Endpoint, svc_pid: int | None) -> dict[int, str]:
    roles = {os.getpid(): "sdk (bench process)"}
    if svc_pid:
        roles[svc_pid] = "gc-service"
    try:
        roles[ep.mep_pid()] = "MEP"
        for u in ep.ueps():
            roles[u] = "UEP"
            for w in descendants(u):
                roles[w] = "workers"
    except OSError:
        pass
    return roles


def run_batch(ex, n: int, timeout: float, roles: dict[int, str] | None = None) -> dict:
    """Submits n no-op tasks and waits for all results; times from first submit to last result."""
    done_at: list[float] = []
    lock = threading.Lock()
    finished = threading.Event()

    def on_done(_fut):
        with lock:
            done_at.append(time.perf_counter())
            if len(done_at) == n:
                finished.set()

    cpu0 = cpu_times()
    t0 = time.perf_counter()
    futs = []
    for _ in range(n):
        f = ex.submit(noop)
        f.add_done_callback(on_done)
        futs.append(f)
    submitted = time.perf_counter() - t0
    if not finished.wait(timeout):
        raise RuntimeError(f"only {len(done_at)} of {n} results within {timeout}s")
    cpu1 = cpu_times()
    errors = sum(1 for f in futs if f.exception() is not None)
    total = max(done_at) - t0
    out = {
        "tasks": n,
        "errors": errors,
        "submit_calls_s": round(submitted, 3),
        "seconds": round(total, 3),
        "tasks_per_s": round(n / total, 1),
    }
    if roles is not None:
        out["cpu_s_by_process"] = cpu_split(cpu0, cpu1, roles)
    return out


def run_queued(ep: Endpoint, ex, n: int, timeout: float, roles: dict[int, str]) -> dict:
    """n no-op tasks are submitted while the UEP and its workers are stopped (SIGSTOP); the
    clock runs from SIGCONT to the last result received: the endpoint's drain rate without the
    SDK's submit path in the way (results still travel UEP → service → SDK)."""
    ueps = ep.ueps()
    procs = [p for u in ueps for p in (u, *descendants(u))]
    done_at: list[float] = []
    lock = threading.Lock()
    finished = threading.Event()

    def on_done(_fut):
        with lock:
            done_at.append(time.perf_counter())
            if len(done_at) == n:
                finished.set()

    for p in procs:
        os.kill(p, signal.SIGSTOP)
    try:
        futs = []
        for _ in range(n):
            f = ex.submit(noop)
            f.add_done_callback(on_done)
            futs.append(f)
        wait_for(lambda: all(f.task_id for f in futs), 300, "all tasks accepted by the service", 0.1)
        time.sleep(1)  # let the service's last publishes settle in the queue
    finally:
        cpu0 = cpu_times()
        t0 = time.perf_counter()
        for p in procs:
            os.kill(p, signal.SIGCONT)
    if not finished.wait(timeout):
        raise RuntimeError(f"only {len(done_at)} of {n} results within {timeout}s")
    cpu1 = cpu_times()
    total = max(done_at) - t0
    return {
        "tasks": n,
        "errors": sum(1 for f in futs if f.exception() is not None),
        "seconds": round(total, 3),
        "tasks_per_s": round(n / total, 1),
        "cpu_s_by_process": cpu_split(cpu0, cpu1, roles),
    }


def measure_latency_direct(ep: Endpoint, n: int) -> dict:
    """Sequential round trips without the Executor's result matching, which runs on a 0.5 s
    timer: the unmodified SDK Client submits one task (``create_batch`` + ``batch_run``, one
    REST call) and the result is taken from the task group's AMQP result queue (the queue the
    Executor's result watcher reads) with a blocking pika consumer."""
    import pika
    from globus_compute_sdk import Client

    c = Client()
    fid = c.register_function(noop)
    amqp = c.get_result_amqp_url()

    def submit(tg):
        b = c.create_batch(task_group_id=tg, create_websocket_queue=True)
        b.add(fid)
        return c.batch_run(ep.endpoint_id, b)

    tg = submit(None)["task_group_id"]
    conn = pika.BlockingConnection(pika.URLParameters(amqp["connection_url"]))
    ch = conn.channel()
    queue = f"{amqp['queue_prefix']}{tg}"
    results = ch.consume(queue, inactivity_timeout=60)

    def one_result():
        method, _props, _body = next(results)
        if method is None:
            raise RuntimeError("no result within 60 s")
        ch.basic_ack(method.delivery_tag)

    one_result()  # the warm-up task's
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        submit(tg)
        one_result()
        lat.append((time.perf_counter() - t) * 1000)
    ch.cancel()
    conn.close()
    return latency_stats(lat)


def latency_stats(lat: list[float]) -> dict:
    return {
        "n": len(lat),
        "p50": round(percentile(lat, 50), 2),
        "p99": round(percentile(lat, 99), 2),
        "mean": round(statistics.mean(lat), 2),
        "min": round(min(lat), 2),
        "max": round(max(lat), 2),
    }


def run_endpoint_only(ep: Endpoint, svc: Service, ex, n: int, timeout: float, roles: dict[int, str]) -> dict:
    """The endpoint alone: n tasks are queued while the UEP (and its workers) are stopped; then
    gc-service is stopped too (SIGSTOP, so nothing takes results off the broker's ``results``
    queue), the UEP is continued, and the clock runs until all n results sit in ``results``
    (polled with a passive queue declare). Then the service is continued and the SDK gets its
    results. Measures task queue → UEP → workers → UEP → results exchange, with RabbitMQ.
    Results are counted in a private queue bound to the `results` exchange beside the service's."""
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(svc.amqp))
    ch = conn.channel()
    # A private copy of everything routed to the service's `results` queue (topic exchange
    # `results`, key `<id>.results`): its ready count is exact, while the stopped service's
    # consumer holds up to its prefetch of the `results` queue's messages unacknowledged.
    copy = ch.queue_declare(f"gcrs-epbench-copy-{uuid.uuid4().hex[:8]}", exclusive=True).method.queue
    ch.queue_bind(copy, "results", routing_key="*.results")

    def in_results() -> int:
        return ch.queue_declare(copy, passive=True).method.message_count

    ueps = ep.ueps()
    procs = [p for u in ueps for p in (u, *descendants(u))]
    for p in procs:
        os.kill(p, signal.SIGSTOP)
    stopped = list(procs)
    try:
        futs = [ex.submit(noop) for _ in range(n)]
        wait_for(lambda: all(f.task_id for f in futs), 300, "all tasks accepted by the service", 0.1)
        time.sleep(1)
        os.kill(svc.proc.pid, signal.SIGSTOP)
        stopped.append(svc.proc.pid)
        base = in_results()
        cpu0 = cpu_times()
        t0 = time.perf_counter()
        for p in procs:
            os.kill(p, signal.SIGCONT)
        stopped = [svc.proc.pid]
        deadline = time.monotonic() + timeout
        while in_results() - base < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {in_results() - base} of {n} results within {timeout}s")
            time.sleep(0.01)
        total = time.perf_counter() - t0
        cpu1 = cpu_times()
    finally:
        for p in stopped:
            os.kill(p, signal.SIGCONT)
        conn.close()
    wait_for(lambda: all(f.done() for f in futs), timeout, "the SDK to receive the results", 0.1)
    return {
        "tasks": n,
        "errors": sum(1 for f in futs if f.exception() is not None),
        "seconds": round(total, 3),
        "tasks_per_s": round(n / total, 1),
        "cpu_s_by_process": cpu_split(cpu0, cpu1, roles),
    }


def measure_warm(ep: Endpoint, svc: Service, args, Executor) -> dict:
    svc_pid = svc.proc.pid
    out = {}
    # The Executor throttles itself to api_burst_limit (at most 8) API calls of fewer than
    # that many tasks per api_burst_window_s (16 s), and that history delays any later call:
    # each phase gets its own Executor so single-task phases cannot slow the batched ones.
    def executor():
        return Executor(endpoint_id=ep.endpoint_id, batch_size=args.batch_size, api_burst_limit=8)

    with executor() as ex:
        t0 = time.perf_counter()
        ex.submit(noop).result(timeout=180)
        out["main_uep_first_result_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        log(f"  warm-up ({args.warmup} tasks)")
        out["warmup"] = run_batch(ex, args.warmup, 600)

    log(f"  latency ({args.latency_n} sequential, Client + result queue)")
    out["latency_ms"] = measure_latency_direct(ep, args.latency_n)
    log(f"    {out['latency_ms']}")

    with executor() as ex:
        log(f"  throughput ({args.tasks} tasks)")
        out["throughput"] = run_batch(ex, args.tasks, 1800, roles_of(ep, svc_pid))
        log(f"    {out['throughput']}")

    if args.queued:
        with executor() as ex:
            log(f"  queued throughput ({args.tasks} tasks queued behind a stopped UEP)")
            out["throughput_queued"] = run_queued(ep, ex, args.tasks, 1800, roles_of(ep, svc_pid))
            log(f"    {out['throughput_queued']}")

    if args.queued:
        with executor() as ex:
            log(f"  endpoint-only throughput ({args.tasks} tasks; service stopped while they run)")
            out["throughput_endpoint_only"] = run_endpoint_only(ep, svc, ex, args.tasks, 1800, roles_of(ep, svc.proc.pid))
            log(f"    {out['throughput_endpoint_only']}")

    if args.executor_latency_n:
        with executor() as ex:
            log(f"  latency ({args.executor_latency_n} sequential through the Executor)")
            lat = []
            for _ in range(args.executor_latency_n):
                t = time.perf_counter()
                ex.submit(noop).result(timeout=60)
                lat.append((time.perf_counter() - t) * 1000)
            out["latency_executor_ms"] = latency_stats(lat)
            log(f"    {out['latency_executor_ms']}")

    log(f"  idle {args.idle}s")
    time.sleep(args.idle)
    mep = ep.mep_pid()
    ueps = ep.ueps()
    mem = {"mep": memory(mep), "ueps": [], "workers": []}
    for u in ueps:
        mem["ueps"].append(memory(u))
        mem["workers"].extend(memory(w) for w in descendants(u))
    for key in ("rss_kib", "pss_kib"):
        mem[f"workers_total_{key}"] = sum(w.get(key, 0) for w in mem["workers"])
    out["idle_memory"] = mem
    log(f"    MEP rss {mem['mep'].get('rss_kib')} KiB; UEP {[u.get('rss_kib') for u in mem['ueps']]}; "
        f"workers {[w.get('rss_kib') for w in mem['workers']]}")
    return out


def bench_one(impl: str, engine: str, args, workdir: Path) -> dict:
    log(f"=== {impl} / {engine}")
    svc = Service(args.service_bin, workdir, args.endpoint_url_query)
    ep = None
    saved = dict(os.environ)
    ok = False
    keep = workdir / f"logs-{impl}-{engine}"
    try:
        svc.start()
        client = svc.create_client()
        os.environ.update(sdk_env(client, workdir / f"sdk-{impl}-{engine}"))
        from globus_compute_sdk import Executor

        Executor._default_task_group_id = None
        ep = Endpoint(impl, engine, client, args.endpoint_bin, workdir)
        result: dict = {"impl": impl, "engine": engine, "max_workers": 2}
        result["mep_launch_to_online_s"] = round(ep.start(get_token(client)), 3)
        log(f"  endpoint {ep.endpoint_id} online after {result['mep_launch_to_online_s']}s")
        result["cold"] = measure_cold(ep, svc, args.cold_runs)
        result.update(measure_warm(ep, svc, args, Executor))
        ok = True
        return result
    finally:
        if ep:
            if not ok:
                keep.mkdir(exist_ok=True)
            ep.cleanup(keep if not ok else None)
        svc.cleanup()
        if not ok:
            keep.mkdir(exist_ok=True)
            if svc.log.exists():
                shutil.copyfile(svc.log, keep / "service.log")
            log(f"logs kept in {keep}")
        os.environ.clear()
        os.environ.update(saved)


# ---------------------------------------------------------------- report


def machine_info(args) -> dict:
    def cmd(*argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout.strip()
        except OSError as e:
            return f"unavailable: {e}"

    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    from importlib.metadata import version

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_total": Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip(),
        "kernel": platform.release(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "globus_compute_sdk": version("globus-compute-sdk"),
        "globus_compute_endpoint_upstream": version("globus-compute-endpoint"),
        "ours": cmd(args.endpoint_bin, "version") or cmd(args.endpoint_bin, "--version"),
        "gc_service": cmd(args.service_bin, "--version"),
        "rabbitmq": cmd("rabbitmqctl", "-q", "version"),
        "git_commit": args.built_from or cmd("git", "-C", str(REPO), "rev-parse", "HEAD"),
        "git_dirty": None if args.built_from else bool(cmd("git", "-C", str(REPO), "status", "--porcelain", "--", "crates")),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def ratio(a, b, digits=1):
    return round(a / b, digits) if a and b else None


def summarise(results: list[dict]) -> list[dict]:
    rows = []
    for engine in {r["engine"]: None for r in results}:
        by = {r["impl"]: r for r in results if r["engine"] == engine}
        up, us = by.get("upstream"), by.get("ours")

        def get(r, *path):
            for p in path:
                if r is None:
                    return None
                r = r.get(p) if isinstance(r, dict) else None
            return r

        def mem(r, who, key):
            m = get(r, "idle_memory")
            if not m:
                return None
            if who == "mep":
                v = m["mep"].get(key)
            elif who == "uep":
                v = sum(u.get(key, 0) for u in m["ueps"])
            else:
                v = m[f"workers_total_{key}"]
            return round(v / 1024, 1) if v is not None else None

        metrics = [
            ("throughput (tasks/s)", lambda r: get(r, "throughput", "tasks_per_s"), "higher"),
            ("throughput, tasks queued first (tasks/s)", lambda r: get(r, "throughput_queued", "tasks_per_s"), "higher"),
            ("throughput, endpoint only: queued tasks → results queue (tasks/s)", lambda r: get(r, "throughput_endpoint_only", "tasks_per_s"), "higher"),
            ("latency p50, Client + AMQP queue (ms)", lambda r: get(r, "latency_ms", "p50"), "lower"),
            ("latency p99, Client + AMQP queue (ms)", lambda r: get(r, "latency_ms", "p99"), "lower"),
            ("latency p50, Executor (ms)", lambda r: get(r, "latency_executor_ms", "p50"), "lower"),
            ("latency p99, Executor (ms)", lambda r: get(r, "latency_executor_ms", "p99"), "lower"),
            ("cold start: start cmd → first heartbeat, median (ms)", lambda r: get(r, "cold", "start_to_heartbeat_ms_median"), "lower"),
            ("cold: submit → first result, median (ms)", lambda r: get(r, "cold", "first_result_ms_median"), "lower"),
            ("idle MEP RSS (MiB)", lambda r: mem(r, "mep", "rss_kib"), "lower"),
            ("idle MEP PSS (MiB)", lambda r: mem(r, "mep", "pss_kib"), "lower"),
            ("idle UEP RSS (MiB)", lambda r: mem(r, "uep", "rss_kib"), "lower"),
            ("idle UEP PSS (MiB)", lambda r: mem(r, "uep", "pss_kib"), "lower"),
            ("idle workers RSS total (MiB)", lambda r: mem(r, "workers", "rss_kib"), "lower"),
            ("idle workers PSS total (MiB)", lambda r: mem(r, "workers", "pss_kib"), "lower"),
        ]
        for name, f, better in metrics:
            a, b = f(up), f(us)
            adv = ratio(b, a, 2) if better == "higher" else ratio(a, b, 2)
            rows.append({"engine": engine, "metric": name, "upstream": a, "ours": b, "ours_advantage_x": adv})
    return rows


def print_table(rows: list[dict]) -> None:
    if not rows:
        print("no successful runs; see the log above")
        return
    w = max(len(r["metric"]) for r in rows)
    print(f"{'engine':<18} {'metric':<{w}} {'upstream':>10} {'ours':>10} {'advantage':>9}")
    for r in rows:
        def fmt(v):
            return "-" if v is None else f"{v:,}"
        print(f"{r['engine']:<18} {r['metric']:<{w}} {fmt(r['upstream']):>10} {fmt(r['ours']):>10} "
              f"{fmt(r['ours_advantage_x']) + 'x' if r['ours_advantage_x'] else '-':>9}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=10_000, help="throughput tasks (default 10,000)")
    ap.add_argument("--warmup", type=int, default=500, help="warm-up tasks before latency/throughput")
    ap.add_argument("--latency-n", type=int, default=200, help="sequential round trips")
    ap.add_argument("--executor-latency-n", type=int, default=0,
                    help="also time this many Executor.submit().result() round trips (dominated by"
                         " the SDK's own throttle: 8 small API calls per 16 s; default: skip)")
    ap.add_argument("--batch-size", type=int, default=1000, help="Executor batch_size")
    ap.add_argument("--cold-runs", type=int, default=3, help="cold user endpoint starts")
    ap.add_argument("--no-queued", dest="queued", action="store_false",
                    help="skip the queued-behind-a-stopped-UEP throughput")
    ap.add_argument("--idle", type=float, default=10.0, help="idle seconds before reading memory")
    ap.add_argument("--engine", action="append", choices=ENGINES, help="default: both")
    ap.add_argument("--impl", action="append", choices=IMPLS, help="default: both")
    ap.add_argument("--endpoint-bin", default=str(target_dir() / "release" / "globus-compute-endpoint"))
    ap.add_argument("--service-bin", default=str(target_dir() / "release" / "gc-service"))
    ap.add_argument("--endpoint-url-query", help="query string added to the AMQP URL the service hands to"
                    " endpoints and SDKs, e.g. frame_max=8192 (an experiment; default: none)")
    ap.add_argument("--built-from", help="commit the binaries were built from (default: this clone's HEAD)")
    ap.add_argument("--out", help="write JSON here")
    args = ap.parse_args()
    # SIGTERM (and SIGINT, which a background job ignores) end the run through the cleanup code.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if os.geteuid() != 0:
        sys.exit("run as root: the endpoints run as a throwaway unprivileged user (useradd/runuser)")
    engines = args.engine or list(ENGINES)
    impls = args.impl or list(IMPLS)
    machine = machine_info(args)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results = []
    workdir = Path(tempfile.mkdtemp(prefix="gcrs-epbench-"))
    workdir.chmod(0o755)
    with open(LOCK_FILE, "w") as lock:
        log(f"waiting for {LOCK_FILE}")
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            for engine in engines:
                for impl in impls:
                    try:
                        results.append(bench_one(impl, engine, args, workdir))
                    except Exception as e:  # record and go on with the others
                        log(f"{impl}/{engine} failed: {e!r}\n{traceback.format_exc()}")
                        results.append({"impl": impl, "engine": engine, "error": repr(e)})
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    rows = summarise([r for r in results if "error" not in r])
    out = {
        "benchmark": "endpoint: ours vs upstream globus-compute-endpoint 4.19.0 (same gc-service, unmodified SDK)",
        "when": started,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": machine,
        "summary": rows,
        "results": results,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print_table(rows)
    if not any("error" in r for r in results):
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
