#!/usr/bin/env python3
"""Idle memory of OUR user endpoint process alone, with and without a small AMQP frame_max.

No service and no MEP: a throwaway RabbitMQ vhost gets the topology gc-service would declare
(`tasks`, `results`, `heartbeats` exchanges; `results`, `heartbeats` and the UEP's task queue),
and `globus-compute-endpoint _start-user-endpoint` is started with a stdin document carrying
credentials for it (ThreadPoolEngine, max_workers 2). Prints, per run, the time from exec to the
first heartbeat reaching the broker and, after 10 idle seconds, VmRSS / RssAnon / RssFile of the
UEP process (its Python workers are not counted). The runs alternate between the plain URL and
the URL with `?frame_max=8192`: lapin allocates, per connection, send and receive buffers of
32 x frame_max filled with zeros (8 MiB with RabbitMQ's default 128 KiB frames).

Run as root beside a local RabbitMQ (guest/guest, `rabbitmqctl` for the vhost):
  .venv/bin/python bench/endpoint/uep_idle_memory.py [--bin PATH] [--runs 2]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pika

REPO = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")


def status(pid: int) -> dict:
    keep = ("VmRSS", "RssAnon", "RssFile", "Threads")
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in keep:
            out[key] = value.strip()
    return out


def one_run(binary: str, query: str | None, workdir: Path) -> dict:
    vhost = f"gcrs-uepmem-{uuid.uuid4().hex[:8]}"
    for args in (["add_vhost", vhost], ["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"]):
        subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)
    base = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    url = f"{base}?{query}" if query else base
    uep = str(uuid.uuid4())
    conn = pika.BlockingConnection(pika.URLParameters(base))
    proc = None
    try:
        ch = conn.channel()
        ch.exchange_declare("tasks", "direct", durable=True)
        for ex in ("results", "heartbeats"):
            ch.exchange_declare(ex, "topic", durable=True)
            ch.queue_declare(ex, durable=True)
            ch.queue_bind(ex, ex, f"*.{ex}")
        ch.queue_declare(f"{uep}.tasks", durable=True)
        ch.queue_bind(f"{uep}.tasks", "tasks", uep)

        def publish_kwargs(ex):
            return {"exchange": ex, "routing_key": f"{uep}.{ex}", "mandatory": True,
                    "properties": {"delivery_mode": 2}}

        creds = {
            "endpoint_id": uep,
            "task_queue_info": {"connection_url": url, "exchange": "tasks", "queue": f"{uep}.tasks"},
            "result_queue_info": {"connection_url": url, "exchange": "results", "queue": "results",
                                  "queue_publish_kwargs": publish_kwargs("results")},
            "heartbeat_queue_info": {"connection_url": url, "exchange": "heartbeats", "queue": "heartbeats",
                                     "queue_publish_kwargs": publish_kwargs("heartbeats")},
        }
        doc = {
            "amqp_creds": creds,
            "config": "heartbeat_period: 30\nengine:\n  type: ThreadPoolEngine\n  max_workers: 2\n",
            "ep_info": {"posix_ppid": os.getpid()},
        }
        d = workdir / uep
        d.mkdir()
        env = dict(os.environ, GLOBUS_COMPUTE_ENDPOINT_DIR=str(d),
                   PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin")
        t0 = time.perf_counter()
        proc = subprocess.Popen([binary, "_start-user-endpoint", f"uep.{uep}"], stdin=subprocess.PIPE, env=env)
        proc.stdin.write(json.dumps(doc).encode())
        proc.stdin.close()
        while ch.queue_declare("heartbeats", passive=True).method.message_count == 0:
            if time.perf_counter() - t0 > 30 or proc.poll() is not None:
                raise RuntimeError(f"no heartbeat; see {d}/endpoint.log")
            time.sleep(0.002)
        first_heartbeat = time.perf_counter() - t0
        time.sleep(10)
        return {"url_query": query, "exec_to_first_heartbeat_ms": round(first_heartbeat * 1000, 1),
                "uep_idle": status(proc.pid)}
    finally:
        if proc and proc.poll() is None:
            proc.terminate()
            proc.wait(30)
        conn.close()
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=60)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(TARGET / "release" / "globus-compute-endpoint"))
    ap.add_argument("--runs", type=int, default=2, help="runs of each variant")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gcrs-uepmem-") as tmp:
        for _ in range(args.runs):
            for query in (None, "frame_max=8192"):
                print(json.dumps(one_run(args.bin, query, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
