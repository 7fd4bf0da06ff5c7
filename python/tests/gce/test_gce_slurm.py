"""Acceptance of GlobusComputeEngine over real Slurm (issue #7): the unmodified SDK runs 1,000
tasks through our endpoint with ``SlurmProvider`` on the one-node cluster of
``scripts/slurm.sh``. Checked from outside through ``squeue``: blocks are ``sbatch`` jobs named
``gc.<label>.block-<n>.<time>``; a backlog scales out to ``max_blocks`` (tasks come back from
two different jobs); idle blocks are cancelled after ``max_idletime`` down to ``min_blocks``;
``scancel`` of the block running a task makes the task retry on a new block
(``max_retries_on_system_failure: 1``) and succeed; stopping the endpoint cancels the last
block. ``sacct`` is not used: the test cluster runs without accounting.

Skipped when no Slurm node is up, unless ``GCRS_REQUIRE_SLURM`` is set.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gce_support import by_value, gce_site, require_slurm  # noqa: E402

from globus_compute_sdk import Executor  # noqa: E402

pytestmark = pytest.mark.timeout(480, func_only=True)

MAX_IDLETIME = 3
TEMPLATE = """\
heartbeat_period: 5
idle_heartbeats_soft: 120
idle_heartbeats_hard: 240
engine:
  type: GlobusComputeEngine
  label: {{ label }}
  address: 127.0.0.1
  max_workers_per_node: 2
  max_retries_on_system_failure: 1
  job_status_kwargs:
    max_idletime: %d
    strategy_period: 1
  provider:
    type: SlurmProvider
    partition: debug
    exclusive: false
    walltime: "00:10:00"
    init_blocks: 1
    min_blocks: 1
    max_blocks: 2
""" % MAX_IDLETIME

_FUNCS = by_value(
    """
def nap(i):
    import os, time
    time.sleep(0.05)
    return i, os.environ.get("SLURM_JOB_ID")

def hang_first_time(marker):
    import os, time
    job = os.environ.get("SLURM_JOB_ID")
    if not os.path.exists(marker):
        with open(marker + ".tmp", "w") as f:
            f.write(job or "")
        os.rename(marker + ".tmp", marker)
        time.sleep(600)
    return "second attempt", job
"""
)
nap = _FUNCS["nap"]
hang_first_time = _FUNCS["hang_first_time"]


class Squeue:
    """Polls ``squeue`` for the test user's jobs of one engine label in a thread."""

    def __init__(self, user: str | None, label: str):
        self.user = user
        self.prefix = f"gc.{label}.block-"
        self.seen: dict[str, str] = {}  # job id -> job name
        self.max_running = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def jobs(self) -> dict[str, str]:
        """Our jobs in squeue now: job id -> state (PENDING, RUNNING, …)."""
        argv = ["squeue", "--noheader", "--format=%i|%j|%T"]
        if self.user:
            argv.append(f"--user={self.user}")
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        now = {}
        for line in out.stdout.splitlines():
            job, name, state = line.strip().split("|")
            if name.startswith(self.prefix):
                now[job] = state
                with self._lock:
                    self.seen[job] = name
        return now

    def seen_jobs(self) -> dict[str, str]:
        """Every job of ours squeue has shown: job id -> name."""
        with self._lock:
            return dict(self.seen)

    def _run(self):
        while not self._stop.wait(0.5):
            running = sum(1 for s in self.jobs().values() if s == "RUNNING")
            self.max_running = max(self.max_running, running)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def wait_for(self, predicate, timeout: float, what: str) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            now = self.jobs()
            if predicate(now):
                return now
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; squeue: {now}")
            time.sleep(0.5)


@pytest.fixture
def site(request, port_5000):
    require_slurm()
    with gce_site(request, TEMPLATE, "gcrs-gce-slurm-") as endpoint:
        yield endpoint


def test_slurm_acceptance_1000_tasks_scaling_scancel_and_shutdown(site):
    label = f"gcrs-accept-{uuid.uuid4().hex[:6]}"
    marker = f"/tmp/gcrs-gce-slurm-{uuid.uuid4().hex}"
    try:
        with Squeue(site.user, label) as sq, Executor(
            endpoint_id=site.endpoint_id, user_endpoint_config={"label": label}
        ) as ex:
            # 1,000 tasks: the backlog scales out to max_blocks (2).
            t0 = time.monotonic()
            futures = [ex.submit(nap, i) for i in range(1000)]
            results = [f.result(timeout=300) for f in futures]
            took = time.monotonic() - t0
            assert [r[0] for r in results] == list(range(1000))
            jobs_used = {r[1] for r in results}
            assert None not in jobs_used, "a task ran outside a Slurm job"
            assert len(jobs_used) == 2, f"tasks ran in {jobs_used}, expected two blocks"
            seen = sq.seen_jobs()
            assert jobs_used <= set(seen), (jobs_used, seen)
            print(f"\n1000 tasks through SlurmProvider in {took:.1f} s, blocks {sorted(jobs_used)}")

            # Idle: after max_idletime one block is cancelled, down to min_blocks (1).
            t1 = time.monotonic()
            left = sq.wait_for(lambda now: len(now) == 1, 60, "scale-in to one block")
            print(f"scaled in to {left} {time.monotonic() - t1:.1f} s after the last result")
            assert sq.max_running <= 2, "more blocks than max_blocks ran at once"
            time.sleep(MAX_IDLETIME + 2)
            assert len(sq.jobs()) == 1, "min_blocks: 1 must keep one block"

            # scancel of the block running a task: the task is retried on a new block.
            fut = ex.submit(hang_first_time, marker)
            deadline = time.monotonic() + 120
            while not os.path.exists(marker):
                assert time.monotonic() < deadline, "the first attempt never started"
                time.sleep(0.2)
            cancelled = Path(marker).read_text()
            assert cancelled in sq.seen_jobs(), cancelled
            subprocess.run(["scancel", cancelled], check=True, timeout=30)
            value, job = fut.result(timeout=240)
            assert value == "second attempt"
            assert job and job != cancelled, (job, cancelled)
            assert cancelled not in sq.jobs()

        # Stopping the endpoint cancels the blocks it still has.
        assert sq.jobs(), "expected a block to be running before the stop"
        site.stop()
        sq.wait_for(lambda now: not now, 60, "the blocks to be cancelled at stop")
    finally:
        for p in (marker, marker + ".tmp"):
            if os.path.exists(p):
                os.unlink(p)
