#!/usr/bin/env python3
"""GlobusComputeEngine: ours (gc-htex: interchange in the user endpoint, ``gc-worker-manager``
per block) beside upstream 4.19.0's (Parsl HighThroughputExecutor), both on ``LocalProvider``,
in one run against one gc-service, tasks submitted by the unmodified SDK; writes JSON (--out)
and prints a table.

One gc-service (SQLite, fresh vhost of the system RabbitMQ) and one client; then for each
implementation an endpoint (upstream's ``globus-compute-endpoint`` from the venv, or ours with
``gc-worker-manager`` beside it) configured and started as a throwaway unprivileged user (the
``Endpoint`` helper of bench/endpoint/bench.py), with this user endpoint template (options
chosen per measurement through ``user_endpoint_config``; each distinct config is a new UEP):

  engine: {type: GlobusComputeEngine, max_workers_per_node: 2, address: 127.0.0.1,
           provider: {type: LocalProvider, init_blocks: <1>, min_blocks: 0,
                      max_blocks: <1>, parallelism: 1}}

(``strategy_period`` and ``max_idletime`` keep their defaults, 5 s and 120 s, in both.)

cold        ``--cold-runs`` times a new UEP (init_blocks 1) gets one no-op: from calling
            ``Client.batch_run`` (which returns once the service has seen the new UEP's first
            heartbeat) to the result in the task group's queue, and the service-clocked start command →
            first heartbeat (``measure_cold`` of bench/endpoint). Covers UEP start, block
            submission, manager and worker start, the task.
throughput  on one warm UEP (1 block, 2 workers), after ``--warmup`` tasks: ``--tasks`` no-op
            ``Executor.submit`` calls (batch_size 1000), first submit → last result.
scale-out   a new UEP with init_blocks 0, max_blocks 2 gets a backlog of ``--scale-tasks`` tasks
            that sleep ``--scale-sleep`` s and report when they started and their worker's
            parent process (the block's manager). Clock from ``batch_run`` returning (the UEP is
            up and holds the backlog) to the first task start on the first and on the second
            block (the second distinct manager), read from the tasks' own timestamps.

Needs root (useradd/runuser), RabbitMQ on 127.0.0.1:5672, the venv, release binaries:

  CARGO_TARGET_DIR=/root/.cache/gcrs-release cargo build --release -p gc-service -p gc-endpoint -p gc-htex
  CARGO_TARGET_DIR=/root/.cache/gcrs-release .venv/bin/python bench/gce/bench.py --out bench/gce/results.json
"""

from __future__ import annotations

import argparse
import fcntl
import importlib.util
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCK_FILE = "/tmp/gcrs-port-5000.lock"

_spec = importlib.util.spec_from_file_location("gcrs_endpoint_bench", REPO / "bench" / "endpoint" / "bench.py")
epb = sys.modules.get("gcrs_endpoint_bench") or importlib.util.module_from_spec(_spec)
if "gcrs_endpoint_bench" not in sys.modules:
    sys.modules["gcrs_endpoint_bench"] = epb
    _spec.loader.exec_module(epb)
log = epb.log

TEMPLATE = """\
heartbeat_period: 30
idle_heartbeats_soft: 100
idle_heartbeats_hard: 1000
engine:
  type: GlobusComputeEngine
  max_workers_per_node: 2
  address: 127.0.0.1
  provider:
    type: LocalProvider
    init_blocks: {{ init_blocks|default(1) }}
    min_blocks: 0
    max_blocks: {{ max_blocks|default(1) }}
    parallelism: 1
"""

# Shipped by value (defined in a "__main__" namespace).
_NS = {"__name__": "__main__"}
exec(
    "def stamp(secs):\n"
    "    import os, time\n"
    "    t = time.time()\n"
    "    time.sleep(secs)\n"
    "    return [t, os.getppid()]\n",
    _NS,
)
stamp = _NS["stamp"]


class OneService(epb.Service):
    """bench/endpoint's service, shared by both endpoints here: a UEP row is looked up among
    the UEPs of the endpoint being measured (both run the same cold-start configs)."""

    mep_id: str | None = None

    def uep_row(self, uep_config: dict) -> dict | None:
        con = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            rows = con.execute(
                "SELECT id, user_opts, start_sent_at, last_heartbeat FROM user_endpoints WHERE mep_id = ?",
                (self.mep_id,),
            ).fetchall()
        finally:
            con.close()
        for rid, opts, sent, hb in rows:
            if json.loads(opts) == uep_config:
                return {"id": rid, "start_sent_at": sent, "last_heartbeat": hb}
        return None


class GceEndpoint(epb.Endpoint):
    """bench/endpoint's throwaway-user endpoint with the GlobusComputeEngine template (and, for
    ours, ``gc-worker-manager`` beside the copied endpoint binary)."""

    NAME = "gcebench"

    def __init__(self, impl: str, client: dict, args, workdir: Path):
        super().__init__(impl, "GlobusComputeEngine", client, args.endpoint_bin, workdir)
        (self.ep_dir / "user_config_template.yaml.j2").write_text(TEMPLATE)
        if impl == "ours":
            manager = self.root / "bin" / "gc-worker-manager"
            shutil.copy2(Path(args.endpoint_bin).parent / "gc-worker-manager", manager)
            manager.chmod(0o755)
        subprocess.run(["chown", "-R", self.user, str(self.home)], check=True)


def measure_scale_out(ep: GceEndpoint, args, run: int) -> dict:
    """A new UEP (init_blocks 0, max_blocks 2) and a backlog; when the blocks ran tasks."""
    from globus_compute_sdk import Client

    c = Client()
    fid = c.register_function(stamp)
    batch = c.create_batch(user_endpoint_config={"init_blocks": 0, "max_blocks": 2, "scale_run": run})
    for _ in range(args.scale_tasks):
        batch.add(fid, args=(args.scale_sleep,))
    t_submit = time.time()
    r = c.batch_run(ep.endpoint_id, batch)
    t_up = time.time()
    task_ids = r["tasks"][fid]
    results: dict[str, list] = {}
    deadline = time.monotonic() + args.scale_timeout
    while len(results) < len(task_ids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"scale-out: {len(results)} of {len(task_ids)} results in {args.scale_timeout} s")
        time.sleep(1)
        for tid, res in c.get_batch_result([t for t in task_ids if t not in results]).items():
            if not res.get("pending", True):
                if res.get("status") != "success":
                    raise RuntimeError(f"scale-out task {tid} failed: {res.get('exception')}")
                results[tid] = res["result"]
    first_by_manager: dict[int, float] = {}
    for started, manager in results.values():
        first_by_manager[manager] = min(started, first_by_manager.get(manager, started))
    firsts = sorted(first_by_manager.values())
    out = {
        "tasks": len(task_ids),
        "managers": len(firsts),
        "submit_to_uep_up_s": round(t_up - t_submit, 3),
        "uep_up_to_block_first_task_s": [round(t - t_up, 3) for t in firsts],
        "tasks_per_manager": sorted(
            (sum(1 for _s, m in results.values() if m == man) for man in first_by_manager), reverse=True
        ),
    }
    log(f"  scale-out run {run}: {out}")
    for pid in ep.ueps():
        ep.stop_uep(pid)
    return out


def bench_impl(impl: str, service, client: dict, args, workdir: Path) -> dict:
    from globus_compute_sdk import Executor

    log(f"=== {impl}")
    ep = GceEndpoint(impl, client, args, workdir)
    result: dict = {"impl": impl, "loadavg_at_start": os.getloadavg()}
    ok = False
    try:
        result["mep_launch_to_online_s"] = round(ep.start(epb.get_token(client)), 3)
        service.mep_id = ep.endpoint_id
        result["cold"] = epb.measure_cold(ep, service, args.cold_runs)
        with Executor(endpoint_id=ep.endpoint_id, batch_size=1000, api_burst_limit=8) as ex:
            log(f"  warm-up ({args.warmup} tasks)")
            result["warmup"] = epb.run_batch(ex, args.warmup, 900)
            log(f"  throughput ({args.tasks} tasks)")
            result["throughput"] = epb.run_batch(ex, args.tasks, 1800, epb.roles_of(ep, service.proc.pid))
            log(f"    {result['throughput']}")
        for pid in ep.ueps():
            ep.stop_uep(pid)
        result["scale_out"] = [measure_scale_out(ep, args, i) for i in range(args.scale_runs)]
        result["loadavg_at_end"] = os.getloadavg()
        ok = True
    except Exception as e:  # recorded; the other implementation still runs
        result["error"] = repr(e)
        log(f"{impl} failed: {e!r}\n{traceback.format_exc()}")
    finally:
        keep = None if ok else workdir / f"logs-{impl}"
        if keep:
            keep.mkdir(exist_ok=True)
        ep.cleanup(keep)
    return result


def summary(results: list[dict]) -> list[dict]:
    def median(xs):
        return round(statistics.median(xs), 3) if xs else None

    rows = []
    for r in results:
        scale = r.get("scale_out") or []
        second = [s["uep_up_to_block_first_task_s"][1] for s in scale if len(s["uep_up_to_block_first_task_s"]) > 1]
        first = [s["uep_up_to_block_first_task_s"][0] for s in scale if s["uep_up_to_block_first_task_s"]]
        rows.append({
            "impl": r["impl"],
            "throughput_tasks_per_s": r.get("throughput", {}).get("tasks_per_s"),
            "cold_first_result_ms_median": r.get("cold", {}).get("first_result_ms_median"),
            "cold_start_to_heartbeat_ms_median": r.get("cold", {}).get("start_to_heartbeat_ms_median"),
            "scale_first_block_s_median": median(first),
            "scale_second_block_s_median": median(second),
            "scale_runs_reaching_2_blocks": f"{len(second)}/{len(scale)}",
            "error": r.get("error"),
        })
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=10_000, help="throughput tasks (default 10,000)")
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--cold-runs", type=int, default=3)
    ap.add_argument("--scale-runs", type=int, default=3)
    ap.add_argument("--scale-tasks", type=int, default=40, help="backlog of the scale-out runs")
    ap.add_argument("--scale-sleep", type=float, default=1.0, help="seconds each scale-out task sleeps")
    ap.add_argument("--scale-timeout", type=float, default=300)
    ap.add_argument("--impl", action="append", choices=("upstream", "ours"), help="default: both")
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target") / "release"
    ap.add_argument("--endpoint-bin", default=str(target / "globus-compute-endpoint"))
    ap.add_argument("--service-bin", default=str(target / "gc-service"))
    ap.add_argument("--built-from", help="commit the binaries were built from (default: this clone's HEAD)")
    ap.add_argument("--out", help="write JSON here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the endpoints run as throwaway users (useradd/runuser)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    machine = epb.machine_info(args)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    workdir = Path(tempfile.mkdtemp(prefix="gcrs-gcebench-"))
    workdir.chmod(0o755)
    results = []
    with open(LOCK_FILE, "w") as lock:
        log(f"waiting for {LOCK_FILE}")
        fcntl.flock(lock, fcntl.LOCK_EX)
        service = OneService(args.service_bin, workdir)
        saved = dict(os.environ)
        try:
            service.start()
            client = service.create_client()
            os.environ.update(epb.sdk_env(client, workdir / "sdk"))
            from globus_compute_sdk import Executor

            for impl in args.impl or ["upstream", "ours"]:
                Executor._default_task_group_id = None
                results.append(bench_impl(impl, service, client, args, workdir))
        finally:
            service.cleanup()
            os.environ.clear()
            os.environ.update(saved)
            fcntl.flock(lock, fcntl.LOCK_UN)
    rows = summary(results)
    out = {
        "benchmark": "GlobusComputeEngine on LocalProvider: ours vs upstream 4.19.0 (same gc-service, unmodified SDK)",
        "when": started,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": machine,
        "summary": rows,
        "results": results,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    for row in rows:
        print(json.dumps(row))
    if not any("error" in r for r in results):
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        log(f"logs kept in {workdir}")


if __name__ == "__main__":
    main()
