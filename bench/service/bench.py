#!/usr/bin/env python3
"""Throughput benchmark of gc-service; writes JSON (stdout or --out).

Measures, on SQLite and on PostgreSQL:
  submit   -- tasks accepted per second through POST /v3/endpoints/{id}/submit, in batches of
              1,000 no-op tasks (the whole request: validation, one transaction, one confirmed
              AMQP publish per task). The endpoint is registered over REST but not running, so
              the user endpoint start command is sent without waiting (--uep-start-timeout 0)
              and the tasks stay queued in RabbitMQ.
  forward  -- results per second moved from the endpoint result queue to the SDK result queues:
              N results are put on the `results` queue while the service is stopped, then the
              service is started and the clock runs until all N are in the task group's queue
              (recorded in the database, forwarded with publisher confirms, acknowledged).

Needs RabbitMQ on 127.0.0.1:5672 (guest/guest; a throwaway vhost per run), PostgreSQL on
127.0.0.1:5432 (user postgres; a throwaway database per run), `rabbitmqctl` and `psql`, and
nothing else on 127.0.0.1:5000. Run with the project venv's Python (it uses requests + pika):

  CARGO_TARGET_DIR=... cargo build --release -p gc-service
  .venv/bin/python bench/service/bench.py --out bench/service/results.json
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pika
import requests

REPO = Path(__file__).resolve().parents[2]
BASE = "http://127.0.0.1:5000"
SCOPE = "https://auth.globus.org/scopes/facd7ccc-c5f4-42aa-916b-a0e270e2c2a9/all"
PG = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-v", "ON_ERROR_STOP=1", "-c"]
# Placeholder function buffer (the benchmark never runs tasks); the payload is the SDK's
# serialized (args, kwargs) for f(1).
FUNCTION_CODE = "12\n01\ngARjbm9uZQo=\n"
PAYLOAD = "28\n00\ngASVBQAAAAAAAABLAYWULg==\n12\n00\ngAR9lC4=\n"


def default_bin() -> str:
    if os.environ.get("GCRS_SERVICE_BIN"):
        return os.environ["GCRS_SERVICE_BIN"]
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    release = target / "release" / "gc-service"
    return str(release if release.exists() else target / "debug" / "gc-service")


class Run:
    def __init__(self, binary: str, db: str, workdir: Path):
        self.binary = binary
        self.vhost = f"gcrs-bench-{uuid.uuid4().hex[:8]}"
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", self.vhost], check=True, capture_output=True)
        subprocess.run(
            ["rabbitmqctl", "-q", "set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*"],
            check=True,
            capture_output=True,
        )
        self.amqp = f"amqp://guest:guest@127.0.0.1:5672/{self.vhost}"
        self.pg_name = None
        if db == "sqlite":
            self.db_url = f"sqlite://{workdir}/bench-{uuid.uuid4().hex[:6]}.db"
        else:
            self.pg_name = f"gcrs_bench_{uuid.uuid4().hex[:8]}"
            subprocess.run([*PG, f"CREATE DATABASE {self.pg_name}"], check=True)
            self.db_url = f"postgres://postgres@127.0.0.1:5432/{self.pg_name}"
        self.env = dict(os.environ, GCRS_DATABASE_URL=self.db_url, GCRS_LOG="warn")
        self.proc = None
        self.log = workdir / f"service-{db}.log"

    def start(self):
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--amqp-url", self.amqp, "--uep-start-timeout", "0"],
            env=self.env,
            stdout=open(self.log, "a"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"gc-service exited; see {self.log}")
            try:
                if requests.get(f"{BASE}/v2/version", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        sys.exit("gc-service did not start")

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(30)
            self.proc = None

    def cleanup(self):
        self.stop()
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", self.vhost], capture_output=True)
        if self.pg_name:
            subprocess.run([*PG, f"DROP DATABASE IF EXISTS {self.pg_name} WITH (FORCE)"])


def bench_db(binary: str, db: str, batches: int, workdir: Path) -> dict:
    run = Run(binary, db, workdir)
    try:
        run.start()
        creds = json.loads(
            subprocess.run(
                [binary, "client", "create", "--name", "bench", "--json"],
                env=run.env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        s = requests.Session()
        tok = s.post(
            f"{BASE}/auth/v2/oauth2/token",
            auth=(creds["client_id"], creds["client_secret"]),
            data={"grant_type": "client_credentials", "scope": SCOPE},
        ).json()["access_token"]
        s.headers["Authorization"] = f"Bearer {tok}"
        eid = s.post(f"{BASE}/v3/endpoints", json={"endpoint_name": "bench", "metadata": {}}).json()[
            "endpoint_id"
        ]
        fid = s.post(
            f"{BASE}/v3/functions",
            json={"function_name": "noop", "function_code": FUNCTION_CODE, "serialized": True, "meta": {}},
        ).json()["function_uuid"]
        body = {"create_queue": True, "tasks": {fid: [PAYLOAD] * 1000}}
        # Warm-up batch (creates the task group, queues and prepared statements).
        first = s.post(f"{BASE}/v3/endpoints/{eid}/submit", json=body)
        first.raise_for_status()
        tg = first.json()["task_group_id"]
        body["task_group_id"] = tg
        task_ids = list(first.json()["tasks"][fid])
        t0 = time.perf_counter()
        for _ in range(batches):
            r = s.post(f"{BASE}/v3/endpoints/{eid}/submit", json=body)
            r.raise_for_status()
            task_ids.extend(r.json()["tasks"][fid])
        submit_s = time.perf_counter() - t0
        n_submit = batches * 1000

        # Results: queue one per task while the service is down, then time the drain.
        run.stop()
        conn = pika.BlockingConnection(pika.URLParameters(run.amqp))
        ch = conn.channel()
        for tid in task_ids:
            msg = {"message_type": "result", "data": {"task_id": tid, "data": "00\ngAROLg==\n",
                                                      "details": None, "error_details": None,
                                                      "task_statuses": None}}
            ch.basic_publish("results", f"{eid}.results", b"\x01" + json.dumps(msg).encode())
        sdk_queue = f"gcrs_results_{tg}"
        t1 = time.perf_counter()
        run.start()
        while True:
            n = ch.queue_declare(sdk_queue, passive=True).method.message_count
            if n >= len(task_ids):
                break
            time.sleep(0.02)
        forward_s = time.perf_counter() - t1
        conn.close()
        return {
            "submit": {
                "tasks": n_submit,
                "batch_size": 1000,
                "seconds": round(submit_s, 3),
                "tasks_per_s": round(n_submit / submit_s, 1),
            },
            "forward": {
                "results": len(task_ids),
                "seconds_including_service_start": round(forward_s, 3),
                "results_per_s": round(len(task_ids) / forward_s, 1),
            },
        }
    finally:
        run.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--service-bin", default=default_bin())
    ap.add_argument("--batches", type=int, default=10, help="timed batches of 1,000 tasks")
    ap.add_argument("--db", action="append", choices=["sqlite", "postgres"])
    ap.add_argument("--out", help="write JSON here instead of stdout")
    args = ap.parse_args()
    dbs = args.db or ["sqlite", "postgres"]
    with tempfile.TemporaryDirectory() as tmp:
        results = {db: bench_db(args.service_bin, db, args.batches, Path(tmp)) for db in dbs}
    out = {
        "benchmark": "gc-service submit and result-forwarding throughput",
        "service_bin": args.service_bin,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": results,
    }
    text = json.dumps(out, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
