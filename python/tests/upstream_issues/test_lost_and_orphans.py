"""Issue #10 points 2 and 3: lost workers, managers and batch jobs fail (or retry) exactly
their tasks, and nothing outlives its parent (upstream #704, #890, #780).

Real service, RabbitMQ, our endpoint run as a throwaway user, the unmodified SDK, and for the
batch-job case the one-node Slurm cluster of ``scripts/slurm.sh`` (skipped without it unless
``GCRS_REQUIRE_SLURM`` is set).  Processes are killed with SIGKILL (no clean-up code runs) and
the process table is then checked for leftovers of the throwaway user: every process the
endpoint starts runs as that user, so ``ps -u USER`` is the complete list.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gce"))
from gce_support import by_value, gce_site, require_slurm, svc  # noqa: E402

from globus_compute_sdk import Executor  # noqa: E402
from globus_compute_sdk.errors import TaskExecutionFailed  # noqa: E402

pytestmark = pytest.mark.timeout(240, func_only=True)

TEMPLATE = """\
heartbeat_period: 5
idle_heartbeats_soft: 12
idle_heartbeats_hard: 120
engine:
{% if kind == 1 %}
  type: ThreadPoolEngine
  max_workers: 2
{% else %}
  type: GlobusComputeEngine
  max_workers_per_node: 2
  max_retries_on_system_failure: {{ retries }}
  heartbeat_period: 2
  heartbeat_threshold: 6
{% if kind == 3 %}
  address: 127.0.0.1
  provider:
    type: SlurmProvider
    partition: debug
    exclusive: false
    walltime: "00:05:00"
    init_blocks: 1
    min_blocks: 0
    max_blocks: 1
{% else %}
  provider:
    type: LocalProvider
    init_blocks: 1
    min_blocks: 0
    max_blocks: 1
{% endif %}
{% endif %}
"""

THREADS, LOCAL, SLURM = 1, 2, 3

_FUNCS = by_value(
    """
def whoami(seconds=0):
    import os, time
    time.sleep(seconds)
    return os.getpid(), os.getppid(), os.environ.get("SLURM_JOB_ID")

def double(x):
    return 2 * x
"""
)
whoami = _FUNCS["whoami"]
double = _FUNCS["double"]


@pytest.fixture(scope="module")
def ep(request, port_5000):
    with gce_site(request, TEMPLATE, "gcrs-orphan-tests-") as endpoint:
        yield endpoint


def executor(ep, kind: int, retries: int = 0) -> Executor:
    return Executor(
        endpoint_id=ep.endpoint_id, user_endpoint_config={"kind": kind, "retries": retries}
    )


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def gone(pids, timeout: float, what: str):
    svc.wait_for(lambda: not [p for p in pids if alive(p)], timeout, what, interval=0.2)


def user_processes(ep) -> dict[int, str]:
    return {p: cmdline(p) for p in ep.processes() if alive(p)}


def mep_pid(ep) -> int:
    return int((ep.ep_dir / "daemon.pid").read_text())


def test_killed_user_endpoint_takes_its_workers_along(ep):
    with executor(ep, THREADS) as ex:
        worker, uep, _ = ex.submit(whoami).result(timeout=120)
        assert "python" in cmdline(worker) and alive(uep)
        running = ex.submit(whoami, 8)
        time.sleep(2)
        os.kill(uep, signal.SIGKILL)
        # PR_SET_PDEATHSIG: the kernel kills the workers of a user endpoint that died.
        gone([uep, worker], 15, "the user endpoint's workers to die with it")
        # The task that was running is not lost: its message was never acknowledged, so it
        # goes back to the queue and the next user endpoint (started for a later submit once
        # the service sees the old one's heartbeats stop) runs it again.
        deadline = time.monotonic() + 150
        while True:
            try:
                assert ex.submit(double, 21).result(timeout=15) == 42
                break
            except TimeoutError:
                assert time.monotonic() < deadline, "no new user endpoint took over"
        again, new_uep, _ = running.result(timeout=60)
        assert again != worker and new_uep != uep


def _gce_block(ex) -> tuple[int, int]:
    worker, manager, _ = ex.submit(whoami).result(timeout=180)
    assert "gc-worker-manager" in cmdline(manager), cmdline(manager)
    return worker, manager


def test_killed_manager_fails_exactly_its_tasks_and_leaves_no_workers(ep):
    with executor(ep, LOCAL) as ex:
        worker, manager = _gce_block(ex)
        siblings = [p for p, c in user_processes(ep).items() if p != worker and ppid(p) == manager]
        running = [ex.submit(whoami, 600) for _ in range(2)]
        time.sleep(3)
        os.kill(manager, signal.SIGKILL)
        gone([manager, worker, *siblings], 15, "the manager's workers to die with it")
        for fut in running:
            with pytest.raises(TaskExecutionFailed) as info:
                fut.result(timeout=120)
            text = str(info.value)
            assert "manager" in text.lower() and ("lost" in text.lower()), text
        # A new block takes over; the endpoint keeps working.
        assert ex.submit(double, 5).result(timeout=180) == 10


def test_killed_user_endpoint_takes_its_managers_along(ep):
    with executor(ep, LOCAL, retries=1) as ex:
        worker, manager = _gce_block(ex)
        # Short: the task is not lost with its user endpoint, it reruns in the next one, and
        # leaving the Executor waits for it.
        ex.submit(whoami, 8)
        time.sleep(2)
        ueps = [p for p, c in user_processes(ep).items() if "start-user-endpoint" in c]
        assert ueps, user_processes(ep)
        t0 = time.monotonic()
        for p in ueps:
            os.kill(p, signal.SIGKILL)
        gone([manager, worker], 60, "managers and workers of a dead user endpoint to exit")

        def leftovers():
            return {
                p: c[:60]
                for p, c in user_processes(ep).items()
                if "gc-worker-manager" in c or "_boot()" in c or "globus_compute_rs_worker" in c
            }

        svc.wait_for(lambda: not leftovers(), 60, "every manager and worker to exit")
        print(f"managers and workers gone {time.monotonic() - t0:.1f} s after their UEP died")


def test_cancelled_slurm_job_fails_its_tasks_and_leaves_nothing(ep):
    require_slurm()
    with executor(ep, SLURM) as ex:
        worker, manager, job = ex.submit(whoami).result(timeout=180)
        assert job, "not inside a Slurm job"
        running = ex.submit(whoami, 600)
        time.sleep(3)
        subprocess.run(["scancel", "--signal=KILL", "--full", job], check=True, timeout=30)
        gone([manager, worker], 60, "the job's manager and workers to end with the job")
        with pytest.raises(TaskExecutionFailed) as info:
            running.result(timeout=120)
        text = str(info.value)
        assert "lost" in text.lower(), text


def test_killed_core_endpoint_leaves_no_user_endpoint_behind(ep):
    with executor(ep, THREADS) as ex:
        worker, uep, _ = ex.submit(whoami).result(timeout=120)
    mep = mep_pid(ep)
    os.kill(mep, signal.SIGKILL)
    gone([mep, uep, worker], 30, "user endpoints and workers of a dead core endpoint to exit")
    leftovers = user_processes(ep)
    svc.wait_for(lambda: not user_processes(ep), 30, f"no process of the endpoint user ({leftovers})")
