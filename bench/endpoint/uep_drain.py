#!/usr/bin/env python3
"""OUR user endpoint alone (no service, no MEP): N no-op tasks, serialized with the unmodified
SDK's ComputeSerializer, are queued on its task queue while the UEP and its workers are stopped
(SIGSTOP); after SIGCONT the clock runs until N results sit in the broker's `results` queue.
Prints tasks/s and the CPU seconds of the UEP and of its workers during the drain. With
`--perf`, `perf record -g` samples the UEP during the drain into /tmp/gcrs-uep-drain.perf
(perf slows it down; read the throughput of a run without it).

Run as root beside a local RabbitMQ (guest/guest, `rabbitmqctl`):
  .venv/bin/python bench/endpoint/uep_drain.py [--tasks 20000] [--bin PATH] [--perf]
"""
import argparse, json, os, signal, subprocess, sys, tempfile, time, uuid
from pathlib import Path

import pika
from globus_compute_sdk.serialize import ComputeSerializer

REPO = Path(__file__).resolve().parents[2]
_ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
_ap.add_argument("--tasks", type=int, default=20000)
_ap.add_argument("--bin", default=str(Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target") / "release" / "globus-compute-endpoint"))
_ap.add_argument("--perf", action="store_true")
_args = _ap.parse_args()
BIN, N, PERF = _args.bin, _args.tasks, _args.perf
ns = {"__name__": "__main__"}; exec("def noop():\n    return None\n", ns)
s = ComputeSerializer()
code = s.pack_buffers([s.serialize(ns["noop"])])
payload = s.pack_buffers([s.serialize(()), s.serialize({})])
fid = str(uuid.uuid4())
def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                st = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            if int(st[st.rindex(")") + 2:].split()[1]) == pid:
                out.append(int(d))
    return out
def cpu(pid):
    f = Path(f"/proc/{pid}/stat").read_text(); f = f[f.rindex(")") + 2:].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
vhost = f"gcrs-uepdrain-{uuid.uuid4().hex[:6]}"
subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True, capture_output=True)
subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True, capture_output=True)
url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
uep = str(uuid.uuid4())
c = pika.BlockingConnection(pika.URLParameters(url)); ch = c.channel()
ch.exchange_declare("tasks", "direct", durable=True)
for ex in ("results", "heartbeats"):
    ch.exchange_declare(ex, "topic", durable=True); ch.queue_declare(ex, durable=True); ch.queue_bind(ex, ex, f"*.{ex}")
tq = f"{uep}.tasks"; ch.queue_declare(tq, durable=True)
pk = lambda ex: {"exchange": ex, "routing_key": f"{uep}.{ex}", "mandatory": True, "properties": {"delivery_mode": 2}}
creds = {"endpoint_id": uep, "task_queue_info": {"connection_url": url, "exchange": "tasks", "queue": tq},
         "result_queue_info": {"connection_url": url, "exchange": "results", "queue": "results", "queue_publish_kwargs": pk("results")},
         "heartbeat_queue_info": {"connection_url": url, "exchange": "heartbeats", "queue": "heartbeats", "queue_publish_kwargs": pk("heartbeats")}}
doc = {"amqp_creds": creds, "config": "heartbeat_period: 30\nengine:\n  type: ThreadPoolEngine\n  max_workers: 2\n", "ep_info": {"posix_ppid": os.getpid()}}
d = Path(tempfile.mkdtemp(prefix="gcrs-uep-drain-"))
env = dict(os.environ, GLOBUS_COMPUTE_ENDPOINT_DIR=str(d), PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin")
p = subprocess.Popen([BIN, "_start-user-endpoint", f"uep.{uep}"], stdin=subprocess.PIPE, env=env)
p.stdin.write(json.dumps(doc).encode()); p.stdin.close()
def send(n):
    for _ in range(n):
        tid = str(uuid.uuid4())
        body = b"\x01" + json.dumps({"message_type": "task", "data": {"task_id": tid, "container_id": None, "container": None, "task_buffer": code + payload}}).encode()
        ch.basic_publish("", tq, body, pika.BasicProperties(headers={"task_uuid": tid, "function_uuid": fid}, delivery_mode=2))
def nres(): return ch.queue_declare("results", passive=True).method.message_count
send(1)
t0 = time.time()
while nres() < 1:
    time.sleep(0.01)
    if time.time() - t0 > 30: sys.exit("no warm-up result")
ch.queue_purge("results")
time.sleep(2)
procs = [p.pid] + children(p.pid)
for q in procs: os.kill(q, signal.SIGSTOP)
send(N)
time.sleep(1)
c0 = {q: cpu(q) for q in procs}
perf = None
if PERF:
    perf = subprocess.Popen(["perf", "record", "-F", "999", "-g", "-p", str(p.pid), "-o", "/tmp/gcrs-uep-drain.perf"], stderr=subprocess.DEVNULL)
    time.sleep(0.5)
t0 = time.perf_counter()
for q in procs: os.kill(q, signal.SIGCONT)
while nres() < N:
    time.sleep(0.005)
dt = time.perf_counter() - t0
if perf: perf.send_signal(signal.SIGINT); perf.wait()
c1 = {q: cpu(q) for q in procs}
print(json.dumps({"tasks": N, "seconds": round(dt, 3), "tasks_per_s": round(N / dt), "uep_cpu_s": round(c1[p.pid] - c0[p.pid], 2),
                  "workers_cpu_s": round(sum(c1[q] - c0[q] for q in procs[1:]), 2)}))
p.terminate(); p.wait(30); c.close()
subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True)
subprocess.run(["rm", "-rf", str(d)])
