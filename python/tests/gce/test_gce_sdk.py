"""GlobusComputeEngine end to end: the unmodified SDK -> gc-service -> OUR endpoint (run as a
throwaway user) -> a user endpoint whose engine is gc-htex -> a LocalProvider block running
``gc-worker-manager`` -> Python workers; and the same over the one-node Slurm cluster of
``scripts/slurm.sh`` (skipped when no Slurm node is up, unless ``GCRS_REQUIRE_SLURM`` is set).
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gce_support import by_value, gce_site, require_slurm  # noqa: E402

from globus_compute_sdk import Executor  # noqa: E402
from globus_compute_sdk.errors import TaskExecutionFailed  # noqa: E402

# func_only: waiting for the port-5000 lock (other suites) is not part of the budget.
pytestmark = pytest.mark.timeout(180, func_only=True)

# One template, two providers and two retry settings, chosen per Executor through
# user_endpoint_config (each distinct config is its own user endpoint). Every variable must be
# given (upstream renders with StrictUndefined), and the switch is a boolean because string
# options reach the template JSON-quoted ('"slurm"'), as upstream sanitises them.
TEMPLATE = """\
heartbeat_period: 5
idle_heartbeats_soft: 12
idle_heartbeats_hard: 120
engine:
  type: GlobusComputeEngine
  max_workers_per_node: 2
  max_retries_on_system_failure: {{ retries }}
{% if slurm %}
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
"""


@pytest.fixture(scope="module")
def gce(request, port_5000):
    """Service (SQLite) + client + our endpoint; yields the endpoint id."""
    with gce_site(request, TEMPLATE, "gcrs-gce-tests-") as endpoint:
        yield endpoint.endpoint_id


def executor(endpoint_id: str, slurm: bool = False, retries: int = 0) -> Executor:
    return Executor(
        endpoint_id=endpoint_id,
        user_endpoint_config={"slurm": slurm, "retries": retries},
    )


# Functions in a namespace named "__main__", so dill ships them by value.
_FUNCS = by_value(
    """
def double(x):
    return 2 * x

def boom(x):
    raise ValueError(f"bad value {x}")

def where():
    import os, socket
    return os.environ.get("SLURM_JOB_ID"), socket.gethostname(), os.getpid()

def die():
    import os
    os.kill(os.getpid(), 9)

def die_once(marker):
    import os
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), 9)
    return "survived"
"""
)
double = _FUNCS["double"]
boom = _FUNCS["boom"]
where = _FUNCS["where"]
die = _FUNCS["die"]
die_once = _FUNCS["die_once"]


def test_200_tasks_and_an_exception(gce):
    with executor(gce) as ex:
        futures = [ex.submit(double, i) for i in range(200)]
        bad = ex.submit(boom, 7)
        assert [f.result(timeout=120) for f in futures] == [2 * i for i in range(200)]
        with pytest.raises(TaskExecutionFailed) as info:
            bad.result(timeout=60)
        assert "ValueError: bad value 7" in str(info.value)


def test_a_killed_worker_fails_its_task_and_the_next_task_works(gce):
    with executor(gce) as ex:
        with pytest.raises(TaskExecutionFailed) as info:
            ex.submit(die).result(timeout=90)
        text = str(info.value)
        assert "WorkerLost: worker process" in text, text
        assert "was killed by signal 9 (SIGKILL) while running this task" in text, text
        assert ex.submit(double, 50).result(timeout=90) == 100


def test_a_killed_worker_is_retried_with_max_retries_on_system_failure(gce):
    marker = f"/tmp/gcrs-gce-{uuid.uuid4().hex}"
    try:
        with executor(gce, retries=1) as ex:
            assert ex.submit(die_once, marker).result(timeout=90) == "survived"
            assert os.path.exists(marker)
            assert ex.submit(double, 4).result(timeout=60) == 8
    finally:
        if os.path.exists(marker):
            os.unlink(marker)


def test_slurm_provider_runs_tasks_in_a_batch_job(gce):
    require_slurm()
    with executor(gce, slurm=True) as ex:
        futures = [ex.submit(double, i) for i in range(10)]
        assert [f.result(timeout=120) for f in futures] == [2 * i for i in range(10)]
        job_id, _host, _pid = ex.submit(where).result(timeout=60)
    assert job_id, "the task did not run inside a Slurm job"
