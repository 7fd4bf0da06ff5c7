#!/usr/bin/env python3
"""Many users on one root multi-user endpoint (MEP): ours beside upstream 4.19.0, in one run,
against one gc-service, with user endpoints (UEPs) started by the unmodified SDK; writes JSON
(--out) and prints a summary.

Set-up (not timed): a private RabbitMQ node (the helper of the fault tests, started with a
high open-files limit: the system broker's 1,024 descriptors cannot hold thousands of AMQP
connections), a gc-service (SQLite) on a fresh vhost of it, ``--users`` Linux users
``gcb0000``, ``gcb0001``, ... (``useradd -m``, GECOS ``gcrs-mep-bench``; removed at the end, also
after a failure or SIGTERM), one service client per user named like the user, and a
client-credentials token each. Every client gets the user identity
``gcbNNNN@bench.example.org`` (``gc-service identity add``), so one expression rule maps every
identity to its user: ``{"source": "{username}", "match": "(.*)@bench\\.example\\.org",
"output": "{0}"}`` (the reference dialect has no character classes: ``[0-9]`` would be literal).

Then, for each implementation (ours with ``--users`` users, then upstream's
``globus-compute-endpoint`` 4.19.0 from the venv with the first ``--upstream-users``), the MEP is
started as root with the same ``config.yaml``, mapping, user endpoint template
(``ThreadPoolEngine``, ``max_workers: 1``, UEP heartbeat every 60 s, no idle shutdown) and
``user_environment.yaml`` (PATH with the venv first), and:

start     every user submits one batch through its own SDK ``Client`` (``--concurrency`` at a
          time, ``Client.batch_run``), each starting that user's UEP. The batch's one task carries
          a ``resource_specification``, which a thread pool engine refuses at once (upstream and
          ours: "resource_specification is not supported on ThreadPoolEngine"), so the UEP runs
          no Python function yet and ours starts no Python worker (its ThreadPoolEngine starts
          workers on the first task). Clock: from the first submit to the service's record of
          each UEP's first heartbeat (``user_endpoints.last_heartbeat``, polled every 0.5 s;
          the 60 s heartbeat period keeps the first value visible). Also per UEP:
          ``start_sent_at`` (service publishes the start command) → first heartbeat.
memory    once all UEPs (or as many as came up before ``--start-timeout``) heartbeat and 10 s
          passed: VmRSS, RssAnon and PSS (``/proc``) of the MEP and of every UEP (children of the
          MEP), median / p95 / total, the private broker's RSS and ``MemAvailable`` before/after.
tasks     the first ``--task-users`` users each submit one no-op (all at once, 20 threads); each
          result is taken from that client's task-group AMQP queue: wall time from the first
          submit to the last result, and per-task latency (submit → result) p50/p95. Ours
          starts a Python worker in each of those UEPs in the first round; upstream runs the
          task in a thread of the UEP. ``--task-rounds`` (default 2) repeats it: warm UEPs.
cpu       CPU seconds by process role (MEP, UEPs, workers, gc-service, RabbitMQ, this bench
          process) during the start and task phases: where the time goes.
stop      SIGTERM to the MEP; seconds until every UEP has exited.

Needs root, the release binaries and the venv; takes the port-5000 flock for the whole run:

  CARGO_TARGET_DIR=/root/.cache/gcrs-release cargo build --release -p gc-service -p gc-endpoint
  .venv/bin/python bench/mep/bench.py --users 1000 --upstream-users 100 --out bench/mep/results.json
"""

from __future__ import annotations

import argparse
import concurrent.futures
import fcntl
import importlib.util
import json
import os
import queue
import re
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
LOCK_FILE = "/tmp/gcrs-port-5000.lock"
GECOS = "gcrs-mep-bench"
NAME = "gcrs-mep-bench"
IDP_DOMAIN = "bench.example.org"


def _load(name: str, path: Path):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


# Helpers shared with the other benchmarks and tests: /proc readers and the SDK task
# (bench/endpoint), the private RabbitMQ node (fault tests), gc-service (service tests).
epb = _load("gcrs_endpoint_bench", REPO / "bench" / "endpoint" / "bench.py")
kit = _load("gcrs_faultkit", REPO / "python" / "tests" / "faults" / "faultkit.py")
svc = kit.svc
log = epb.log


def pct(xs: list[float], p: float) -> float | None:
    return round(epb.percentile(xs, p), 1) if xs else None


def dist(xs: list[float]) -> dict:
    return {"n": len(xs), "p50": pct(xs, 50), "p95": pct(xs, 95), "max": round(max(xs), 1) if xs else None}


def mem_available_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


def proc_status(pid: int) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return {k: v.strip() for k, _, v in (ln.partition(":") for ln in text.splitlines())}


def pids_of_uids(uids: set[int]) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            uid = proc_status(int(d)).get("Uid", "").split()
            if uid and int(uid[0]) in uids:
                out.append(int(d))
    return out


# ---------------------------------------------------------------- users


class Users:
    """``count`` throwaway users ``gcb0000``...; ``remove`` kills their processes and deletes
    them with their homes (also users a crashed earlier run left behind: GECOS marker)."""

    def __init__(self, prefix: str, count: int, homes: Path):
        self.prefix = prefix
        self.names = [f"{prefix}{i:04d}" for i in range(count)]
        self.homes = homes
        self.created: list[str] = []

    @staticmethod
    def leftovers() -> list[str]:
        return [ln.split(":")[0] for ln in Path("/etc/passwd").read_text().splitlines()
                if ln.split(":")[4:5] == [GECOS]]

    def create(self):
        stale = self.leftovers()
        if stale:
            log(f"removing {len(stale)} users left by an earlier run")
            self._remove(stale)
        self.homes.mkdir(parents=True, exist_ok=True)
        self.homes.chmod(0o755)
        for n, name in enumerate(self.names):
            subprocess.run(["useradd", "-m", "-d", str(self.homes / name), "-s", "/bin/sh", "-c", GECOS, name],
                           check=True, capture_output=True, timeout=60)
            self.created.append(name)
            if n % 200 == 199:
                log(f"  {n + 1} users")

    def uids(self) -> set[int]:
        import pwd

        out = set()
        for name in self.created:
            try:
                out.add(pwd.getpwnam(name).pw_uid)
            except KeyError:
                pass
        return out

    def kill_processes(self):
        uids = self.uids()
        for _ in range(20):
            pids = pids_of_uids(uids)
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)

    def _remove(self, names: list[str]):
        for name in names:
            subprocess.run(["userdel", "-r", "-f", name], capture_output=True, timeout=60)

    def remove(self):
        self.kill_processes()
        self._remove(self.created)
        self.created = []


# ---------------------------------------------------------------- the multi-user endpoint


class RootMep:
    """A multi-user endpoint run as root: ours (binary copied where users can execute it) or
    upstream's from the venv; the same configuration files either way."""

    def __init__(self, impl: str, root: Path, admin: dict, our_bin: str):
        self.impl = impl
        self.root = root
        root.mkdir(mode=0o755)
        if impl == "ours":
            exe = root / "bin" / "globus-compute-endpoint"
            exe.parent.mkdir()
            shutil.copy2(our_bin, exe)
            exe.parent.chmod(0o755)
            exe.chmod(0o755)
        else:
            exe = VENV_BIN / "globus-compute-endpoint"
        self.exe = str(exe)
        self.compute_dir = root / "mep"
        self.ep_dir = self.compute_dir / NAME
        self.ep_dir.mkdir(parents=True, mode=0o700)
        idmap = self.ep_dir / "identity_mapping.json"
        idmap.write_text(json.dumps([{
            "DATA_TYPE": "expression_identity_mapping#1.0.0",
            "mappings": [{"source": "{username}", "match": f"(.*)@{re.escape(IDP_DOMAIN)}", "output": "{0}"}],
        }]))
        (self.ep_dir / "config.yaml").write_text(
            f"display_name: gcrs MEP benchmark ({impl})\n"
            "local_compute_services: true\n"
            "heartbeat_period: 30\n"
            "email: admin@example.org\n"
            f"identity_mapping_config_path: {idmap}\n"
        )
        (self.ep_dir / "user_config_template.yaml.j2").write_text(
            "heartbeat_period: 60\n"
            "idle_heartbeats_soft: 0\n"
            "engine:\n"
            "  type: ThreadPoolEngine\n"
            "  max_workers: 1\n"
        )
        (self.ep_dir / "user_environment.yaml").write_text(f"PATH: {VENV_BIN}:/usr/local/bin:/usr/bin:/bin\n")
        self.env = {
            "HOME": str(root),
            "PATH": f"{VENV_BIN}:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "GLOBUS_COMPUTE_USER_DIR": str(self.compute_dir),
            "GLOBUS_SDK_ENVIRONMENT": "local",
            "GLOBUS_SDK_SERVICE_URL_AUTH": "http://localhost:5000/auth/",
            "GLOBUS_COMPUTE_CLIENT_ID": admin["client_id"],
            "GLOBUS_COMPUTE_CLIENT_SECRET": admin["client_secret"],
        }
        self.proc: subprocess.Popen | None = None
        self.endpoint_id: str | None = None

    def start(self, token: str) -> float:
        t0 = time.perf_counter()
        out = open(self.root / "mep.out", "a")
        self.proc = subprocess.Popen([self.exe, "start", NAME], env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                     cwd=self.root, start_new_session=True)
        out.close()
        ep_json = self.ep_dir / "endpoint.json"

        def registered():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.impl} MEP exited: {(self.root / 'mep.out').read_text()[-3000:]}")
            try:
                return ep_json.exists() and json.loads(ep_json.read_text() or "{}").get("endpoint_id")
            except json.JSONDecodeError:
                return None

        self.endpoint_id = epb.wait_for(registered, 120, f"the {self.impl} MEP to register")
        headers = {"Authorization": f"Bearer {token}"}

        def online():
            registered()
            r = svc.requests.get(f"{svc.BASE}/v2/endpoints/{self.endpoint_id}/status", headers=headers, timeout=5)
            return r.status_code == 200 and r.json()["status"] == "online"

        epb.wait_for(online, 120, f"the {self.impl} MEP online", 0.2)
        return time.perf_counter() - t0

    def pid(self) -> int:
        try:
            return int((self.ep_dir / "daemon.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return self.proc.pid

    def ueps(self, uids: set[int]) -> list[int]:
        """The MEP's children that run as one of the benchmark users."""
        wanted = {str(u) for u in uids}
        return [p for p in epb.children(self.pid()) if (proc_status(p).get("Uid", "").split() or ["-1"])[0] in wanted]

    def log_tail(self) -> str:
        p = self.ep_dir / "endpoint.log"
        text = p.read_text(errors="replace") if p.exists() else ""
        return text[-4000:] + (self.root / "mep.out").read_text(errors="replace")[-2000:]

    def stop(self, uids: set[int], timeout: float = 180) -> float | None:
        """SIGTERM to the MEP; seconds until it and every UEP exited (None: had to kill)."""
        if not self.proc or self.proc.poll() is not None:
            return None
        t0 = time.perf_counter()
        try:
            os.kill(self.pid(), signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            epb.wait_for(lambda: self.proc.poll() is not None and not pids_of_uids(uids), timeout,
                         f"the {self.impl} MEP and its UEPs to exit", 0.2)
            return round(time.perf_counter() - t0, 2)
        except RuntimeError as e:
            log(f"  {e}; killing")
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
            return None


# ---------------------------------------------------------------- the service side


class HeartbeatWatch:
    """Polls the service's SQLite database: the first ``last_heartbeat`` seen per UEP of one
    MEP, its ``start_sent_at``, and failure notices."""

    def __init__(self, db_path: Path, mep_id: str):
        self.db_path = db_path
        self.mep_id = mep_id
        self.first_hb: dict[str, float] = {}
        self.sent: dict[str, float] = {}
        self.errors: dict[str, str] = {}
        self.stop = threading.Event()
        self.low_memory = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _poll(self):
        con = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            rows = con.execute("SELECT id, start_sent_at, last_heartbeat, error FROM user_endpoints WHERE mep_id = ?",
                               (self.mep_id,)).fetchall()
        finally:
            con.close()
        for uid, sent, hb, err in rows:
            if sent and uid not in self.sent:
                self.sent[uid] = sent
            if hb and uid not in self.first_hb:
                self.first_hb[uid] = hb
            if err:
                self.errors[uid] = err

    def _run(self):
        while not self.stop.wait(0.5):
            try:
                self._poll()
            except sqlite3.Error as e:
                log(f"  heartbeat poll: {e}")
            if mem_available_mib() < 1536:
                self.low_memory = True

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self._poll()


def make_clients(service, names: list[str]) -> list[dict]:
    """One service client per user name, with the user identity ``<name>@bench.example.org``
    (its primary identity) and a bearer token."""
    def one(name):
        c = service.create_client(name)
        service.admin("identity", "add", "--client", c["client_id"], "--username", f"{name}@{IDP_DOMAIN}",
                      "--provider", "Benchmark IdP")
        c["token"] = svc.get_token(c)
        c["user"] = name
        return c

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        return list(pool.map(one, names))


def sdk_client(c: dict):
    import globus_sdk
    from globus_compute_sdk import Client

    return Client(authorizer=globus_sdk.AccessTokenAuthorizer(c["token"]), do_version_check=False)


RABBIT_PID: list[int] = []  # the private broker's beam.smp, once started


def roles_of(mep: RootMep, service_pid: int, uids: set[int]) -> dict[int, str]:
    """Process roles for the CPU split; anything else is reported by command name."""
    roles = {os.getpid(): "bench (SDK clients)", service_pid: "gc-service", mep.pid(): "MEP"}
    roles.update((p, "RabbitMQ (private node)") for p in RABBIT_PID)
    table = epb.proc_table()
    for pid in pids_of_uids(uids):
        roles[pid] = "UEPs" if table.get(pid) == mep.pid() else "workers"
    return roles


def start_phase(mep: RootMep, clients: list[dict], fid: str, db_path: Path, args, uids: set[int], svc_pid: int) -> dict:
    watch = HeartbeatWatch(db_path, mep.endpoint_id)
    submit_s: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    stop_submitting = threading.Event()

    def submit(c):
        if stop_submitting.is_set():
            return
        client = sdk_client(c)
        batch = client.create_batch(resource_specification={"num_nodes": 1}, user_endpoint_config={})
        batch.add(fid)
        t = time.perf_counter()
        try:
            client.batch_run(mep.endpoint_id, batch)
        except Exception as e:  # recorded; the others go on
            with lock:
                failures.append(f"{c['user']}: {type(e).__name__}: {e}"[:300])
        with lock:
            submit_s.append(time.perf_counter() - t)

    cpu0 = epb.cpu_times()
    mem_before = mem_available_mib()
    t0_wall = time.time()
    t0 = time.perf_counter()
    pool = concurrent.futures.ThreadPoolExecutor(args.concurrency)
    futs = [pool.submit(submit, c) for c in clients]
    n = len(clients)
    deadline = time.monotonic() + args.start_timeout
    last_log = 0.0
    while time.monotonic() < deadline:
        if len(watch.first_hb) >= n or (len(submit_s) >= n and len(watch.first_hb) + len(watch.errors) >= n):
            break
        if watch.low_memory and not stop_submitting.is_set():
            log("  MemAvailable below 1.5 GiB: no further submits")
            stop_submitting.set()
        if time.monotonic() - last_log > 15:
            last_log = time.monotonic()
            log(f"  {len(submit_s)} submits returned, {len(watch.first_hb)} UEPs heart-beating, "
                f"{len(watch.errors)} failure notices, MemAvailable {mem_available_mib()} MiB, "
                f"load {os.getloadavg()[0]:.1f}")
        time.sleep(0.25)
    stop_submitting.set()
    pool.shutdown(wait=True)
    for f in futs:
        f.result()
    watch.close()
    elapsed = time.perf_counter() - t0
    roles = roles_of(mep, svc_pid, uids)
    cpu1 = epb.cpu_times()
    hb = sorted(h - t0_wall for h in watch.first_hb.values())
    per_uep = [watch.first_hb[u] - watch.sent[u] for u in watch.first_hb if u in watch.sent]
    out = {
        "users": n,
        "concurrency": args.concurrency,
        "ueps_heartbeating": len(hb),
        "all_heartbeating": len(hb) >= n,
        "seconds_to_all_heartbeats": round(hb[-1], 2) if len(hb) >= n else None,
        "seconds_to_half": round(hb[len(hb) // 2], 2) if hb and len(hb) * 2 >= n else None,
        "seconds_to_last_seen": round(hb[-1], 2) if hb else None,
        "phase_seconds": round(elapsed, 2),
        "ueps_per_s": round(len(hb) / hb[-1], 1) if hb else None,
        "start_cmd_to_heartbeat_ms": dist([x * 1000 for x in per_uep]),
        "submit_call_s": dist(submit_s),
        "submit_failures": len(failures),
        "submit_failure_examples": failures[:5],
        "failure_notices": len(watch.errors),
        "failure_notice_examples": list(watch.errors.values())[:5],
        "stopped_for_low_memory": watch.low_memory,
        "mem_available_mib_before": mem_before,
        "cpu_s_by_process": epb.cpu_split(cpu0, cpu1, roles),
        "heartbeat_times_s": [round(x, 2) for x in hb[:: max(1, len(hb) // 50)]],
    }
    return out


def memory_phase(mep: RootMep, uids: set[int], rabbit_pid: int | None) -> dict:
    def stats(pids):
        rows = []
        for p in pids:
            m = epb.memory(p)
            st = proc_status(p)
            m["rss_anon_kib"] = int(st.get("RssAnon", "0 kB").split()[0]) if st else 0
            m["threads"] = int(st.get("Threads", "0")) if st else 0
            rows.append(m)
        out = {"count": len(rows)}
        for key in ("rss_kib", "pss_kib", "rss_anon_kib", "threads"):
            vals = [r[key] for r in rows if key in r]
            if not vals:
                continue
            if key == "threads":
                out["threads_median"] = statistics.median(vals)
                out["threads_total"] = sum(vals)
                continue
            mib = [v / 1024 for v in vals]
            name = key.removesuffix("_kib")
            out[f"{name}_mib"] = {"p50": pct(mib, 50), "p95": pct(mib, 95), "max": round(max(mib), 1),
                                  "total": round(sum(mib), 1)}
        return out, rows

    ueps = mep.ueps(uids)
    workers = [p for p in pids_of_uids(uids) if p not in ueps]
    mep_stats, _ = stats([mep.pid()])
    uep_stats, _ = stats(ueps)
    worker_stats, _ = stats(workers)
    out = {"mep": mep_stats, "ueps": uep_stats, "workers_below_ueps": worker_stats,
           "mem_available_mib": mem_available_mib()}
    if rabbit_pid:
        out["rabbitmq_rss_mib"] = round(epb.memory(rabbit_pid).get("rss_kib", 0) / 1024, 1)
    return out


def task_phase(mep: RootMep, clients: list[dict], fid: str, args, uids: set[int], svc_pid: int) -> dict:
    """One no-op per client, all submitted at once; results from the task groups' queues."""
    import pika

    amqp = sdk_client(clients[0]).get_result_amqp_url()
    arrivals: dict[str, float] = {}
    new_queues: queue.Queue = queue.Queue()
    expected = len(clients)
    done = threading.Event()

    def consume():
        conn = pika.BlockingConnection(pika.URLParameters(amqp["connection_url"]))
        ch = conn.channel()
        try:
            while not done.is_set():
                while not new_queues.empty():
                    tg = new_queues.get()

                    def on_message(chan, method, _props, _body, tg=tg):
                        arrivals.setdefault(tg, time.perf_counter())
                        chan.basic_ack(method.delivery_tag)
                        if len(arrivals) >= expected:
                            done.set()

                    ch.basic_consume(f"{amqp['queue_prefix']}{tg}", on_message)
                conn.process_data_events(time_limit=0.02)
        finally:
            conn.close()

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    sent: dict[str, float] = {}
    task_ids: dict[str, tuple[dict, str]] = {}

    def submit(c):
        client = sdk_client(c)
        batch = client.create_batch(create_websocket_queue=True)
        batch.add(fid)
        t = time.perf_counter()
        r = client.batch_run(mep.endpoint_id, batch)
        tg = r["task_group_id"]
        sent[tg] = t
        task_ids[tg] = (c, r["tasks"][fid][0])
        new_queues.put(tg)

    cpu0 = epb.cpu_times()
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        list(pool.map(submit, clients))
    ok = done.wait(args.task_timeout)
    wall = (max(arrivals.values()) - t0) if arrivals else None
    roles = roles_of(mep, svc_pid, uids)
    cpu1 = epb.cpu_times()
    done.set()
    consumer.join(10)
    statuses: dict[str, int] = {}
    for tg, (c, tid) in task_ids.items():
        try:
            st = sdk_client(c).get_task(tid)
            key = "success" if st.get("status") == "success" and not st.get("exception") else str(st.get("status"))
        except Exception as e:  # e.g. the task failed: get_task raises its error
            key = type(e).__name__
        statuses[key] = statuses.get(key, 0) + 1
    lat = [(arrivals[tg] - sent[tg]) * 1000 for tg in arrivals]
    return {
        "tasks": expected,
        "results": len(arrivals),
        "all_results": ok,
        "statuses": statuses,
        "wall_s": round(wall, 2) if wall else None,
        "latency_ms": dist(lat) | {"min": round(min(lat), 1) if lat else None},
        "cpu_s_by_process": epb.cpu_split(cpu0, cpu1, roles),
    }


def bench_impl(impl: str, n_users: int, ctx: dict, args) -> dict:
    users, service, clients, admin = ctx["users"], ctx["service"], ctx["clients"][:n_users], ctx["admin"]
    uids = users.uids()
    log(f"=== {impl}: {n_users} users")
    mep = RootMep(impl, ctx["workdir"] / f"site-{impl}", admin, args.endpoint_bin)
    result: dict = {"impl": impl, "users": n_users, "loadavg_at_start": os.getloadavg()}
    try:
        result["mep_start_to_online_s"] = round(mep.start(admin["token"]), 2)
        log(f"  MEP {mep.endpoint_id} online after {result['mep_start_to_online_s']} s")
        result["mep_idle_rss_mib"] = round(epb.memory(mep.pid()).get("rss_kib", 0) / 1024, 1)
        result["start"] = start_phase(mep, clients, ctx["fid"], ctx["db_path"], args, uids, service.proc.pid)
        log(f"  start: {json.dumps({k: v for k, v in result['start'].items() if k != 'heartbeat_times_s'})}")
        time.sleep(10)
        result["memory"] = memory_phase(mep, uids, ctx["rabbit_pid"])
        log(f"  memory: {json.dumps(result['memory'])}")
        k = min(args.task_users, result["start"]["ueps_heartbeating"])
        result["tasks"] = []
        for n in range(args.task_rounds if k else 0):
            result["tasks"].append(task_phase(mep, clients[:k], ctx["fid"], args, uids, service.proc.pid))
            log(f"  tasks, round {n + 1}: {json.dumps(result['tasks'][-1])}")
        if k:
            result["memory_after_tasks"] = memory_phase(mep, uids, ctx["rabbit_pid"])
        result["loadavg_at_end"] = os.getloadavg()
    except Exception as e:
        result["error"] = repr(e)
        log(f"{impl} failed: {e!r}\n{traceback.format_exc()}\n{mep.log_tail()}")
    finally:
        log(f"  stopping the {impl} MEP")
        result["stop_s"] = mep.stop(uids)
        users.kill_processes()
        log(f"  stopped ({result['stop_s']} s)")
    return result


def rabbit_beam_pid(rabbit) -> int | None:
    for pid in epb.descendants(rabbit.proc.pid):
        if "beam" in proc_status(pid).get("Name", ""):
            return pid
    return None


def run(args) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="gcrs-mepbench-"))
    workdir.chmod(0o755)
    n_total = max(args.users, args.upstream_users)
    users = Users(args.prefix, n_total, workdir / "homes")
    rabbit = service = None
    results: list[dict] = []
    out: dict = {}
    try:
        log(f"creating {n_total} users")
        t = time.perf_counter()
        users.create()
        out["useradd_s"] = round(time.perf_counter() - t, 1)
        rabbit = kit.PrivateRabbit(workdir)
        rabbit.start()
        vhost = type("V", (), {"url": rabbit.add_vhost()})()
        db = svc.Database("sqlite", workdir)
        service = svc.Service(db, vhost, workdir)
        service.env["GCRS_LOG"] = "warn"
        service.start()
        admin = service.create_client("mep-bench-admin")
        admin["token"] = svc.get_token(admin)
        log(f"creating {n_total} clients and tokens")
        t = time.perf_counter()
        clients = make_clients(service, users.names)
        out["clients_s"] = round(time.perf_counter() - t, 1)
        # One public function every client may run.
        os.environ.update({"GLOBUS_SDK_ENVIRONMENT": "local",
                           "GLOBUS_SDK_SERVICE_URL_AUTH": "http://localhost:5000/auth/"})
        fid = sdk_client(admin).register_function(epb.noop, public=True)
        ctx = {"users": users, "service": service, "clients": clients, "admin": admin, "fid": fid,
               "workdir": workdir, "db_path": Path(db.url.removeprefix("sqlite://")),
               "rabbit_pid": rabbit_beam_pid(rabbit)}
        RABBIT_PID[:] = [ctx["rabbit_pid"]] if ctx["rabbit_pid"] else []
        for impl, n in (("ours", args.users), ("upstream", args.upstream_users)):
            if n:
                results.append(bench_impl(impl, n, ctx, args))
                time.sleep(5)
    finally:
        log("cleaning up")
        if service:
            service.stop()
        users.remove()
        if rabbit:
            rabbit.kill()
        failed = any("error" in r for r in results) or not results
        if failed:
            log(f"files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    out["results"] = results
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=1000, help="users / UEPs on our MEP (default 1,000)")
    ap.add_argument("--upstream-users", type=int, default=100, help="users / UEPs on upstream's MEP (default 100)")
    ap.add_argument("--task-users", type=int, default=100, help="UEPs that then run one task each (default 100)")
    ap.add_argument("--task-rounds", type=int, default=2,
                    help="rounds of one task per UEP: the first starts ours' workers, the second finds them warm")
    ap.add_argument("--concurrency", type=int, default=100, help="submits in flight at once (default 100)")
    ap.add_argument("--start-timeout", type=float, default=1200, help="seconds to wait for all heartbeats")
    ap.add_argument("--task-timeout", type=float, default=600, help="seconds to wait for the task results")
    ap.add_argument("--prefix", default="gcb", help="user name prefix (default gcb: gcb0000, gcb0001, ...)")
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target") / "release"
    ap.add_argument("--endpoint-bin", default=str(target / "globus-compute-endpoint"))
    ap.add_argument("--service-bin", default=str(target / "gc-service"))
    ap.add_argument("--built-from", help="commit the binaries were built from (default: this clone's HEAD)")
    ap.add_argument("--out", help="write JSON here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the MEPs run as root and the users are created with useradd")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # Inherited by the private broker, the service and the MEPs: thousands of connections.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.environ["GCRS_SERVICE_BIN"] = args.service_bin
    machine = epb.machine_info(args)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with open(LOCK_FILE, "w") as lock:
        log(f"waiting for {LOCK_FILE}")
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            body = run(args)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    out = {
        "benchmark": "root multi-user endpoint: many users' UEPs, ours vs upstream 4.19.0 (same gc-service)",
        "when": started,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": machine,
        **body,
    }
    text = json.dumps(out, indent=2) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    for r in out["results"]:
        s, m = r.get("start", {}), r.get("memory", {})
        tk = (r.get("tasks") or [{}])[0]
        print(f"{r['impl']:>8}: {r['users']} users; {s.get('ueps_heartbeating')} heart-beating after "
              f"{s.get('seconds_to_last_seen')} s; MEP RSS {m.get('mep', {}).get('rss_mib', {}).get('p50')} MiB; "
              f"UEP RSS p50/p95 {m.get('ueps', {}).get('rss_mib', {}).get('p50')}/"
              f"{m.get('ueps', {}).get('rss_mib', {}).get('p95')} MiB; tasks {tk.get('results')}/{tk.get('tasks')} "
              f"wall {tk.get('wall_s')} s p50/p95 {tk.get('latency_ms', {}).get('p50')}/"
              f"{tk.get('latency_ms', {}).get('p95')} ms; error {r.get('error')}")


if __name__ == "__main__":
    main()
