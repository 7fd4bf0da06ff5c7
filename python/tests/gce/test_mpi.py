"""GlobusMPIEngine end to end: the unmodified SDK's ``MPIFunction`` / ``ShellFunction`` ->
gc-service -> OUR endpoint -> a user endpoint whose engine is gc-htex in MPI mode -> a
LocalProvider block (``SimpleLauncher``) running one ``gc-worker-manager --mpi-launcher
mpiexec`` -> Python workers -> Debian's Open MPI ``mpiexec``.

Open MPI refuses to run as root unless told otherwise; the template's ``worker_init`` exports
``OMPI_ALLOW_RUN_AS_ROOT`` / ``OMPI_ALLOW_RUN_AS_ROOT_CONFIRM`` so the test also works when
the user endpoint runs as root (normally it runs as a throwaway user). Skipped with a message
when ``mpiexec`` is missing, unless ``GCRS_REQUIRE_MPI`` is set (``scripts/lib.sh`` installs
``openmpi-bin``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

_SVC_CONFTEST = Path(__file__).resolve().parents[1] / "service" / "conftest.py"
if "gcrs_service_conftest" in sys.modules:
    svc = sys.modules["gcrs_service_conftest"]
else:
    _spec = importlib.util.spec_from_file_location("gcrs_service_conftest", _SVC_CONFTEST)
    svc = importlib.util.module_from_spec(_spec)
    sys.modules["gcrs_service_conftest"] = svc
    _spec.loader.exec_module(svc)

from globus_compute_sdk import Executor, MPIFunction, ShellFunction  # noqa: E402
from globus_compute_sdk.errors import TaskExecutionFailed  # noqa: E402

# func_only: waiting for the port-5000 lock (other suites) is not part of the budget.
pytestmark = pytest.mark.timeout(180, func_only=True)

TEMPLATE = """\
heartbeat_period: 5
idle_heartbeats_soft: 12
idle_heartbeats_hard: 120
engine:
  type: GlobusMPIEngine
  mpi_launcher: mpiexec
  max_workers_per_block: 2
  provider:
    type: LocalProvider
    init_blocks: 1
    min_blocks: 0
    max_blocks: 1
    worker_init: export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    launcher:
      type: SimpleLauncher
"""


def manager_bin() -> Path:
    """``gc-worker-manager`` from ``GCRS_BIN_DIR``, else beside our endpoint binary."""
    explicit = os.environ.get("GCRS_BIN_DIR")
    base = Path(explicit) if explicit else Path(svc.endpoint_bin()).parent
    return base / "gc-worker-manager"


class MpiEndpoint(svc.OurEndpoint):
    """Our endpoint with the GlobusMPIEngine template and ``gc-worker-manager`` beside the
    copied endpoint binary (where the user endpoint looks for it first)."""

    NAME = "gcrs-mpi-ep"

    def __init__(self, client: dict):
        super().__init__(client)
        (self.ep_dir / "user_config_template.yaml.j2").write_text(TEMPLATE)
        bindir = self.root / "bin"
        bindir.mkdir(exist_ok=True)
        shutil.copy2(manager_bin(), bindir / "gc-worker-manager")
        (bindir / "gc-worker-manager").chmod(0o755)
        bindir.chmod(0o755)
        if self.user:
            subprocess.run(["chown", "-R", self.user, str(self.home)], check=True)


@pytest.fixture(scope="module")
def mpi_ep(request, port_5000):
    """Service (SQLite) + client + our endpoint; yields the endpoint id. Logs are kept in
    /tmp/gcrs-mpi-tests-* when a test failed."""
    if shutil.which("mpiexec") is None:
        if os.environ.get("GCRS_REQUIRE_MPI"):
            pytest.fail(
                "GCRS_REQUIRE_MPI is set but mpiexec is missing (apt-get install openmpi-bin)"
            )
        pytest.skip("mpiexec is missing (apt-get install openmpi-bin)")
    if not manager_bin().is_file():
        pytest.fail(f"{manager_bin()} is missing: run cargo build -p gc-htex")
    workdir = Path(tempfile.mkdtemp(prefix="gcrs-mpi-tests-"))
    failed_before = request.session.testsfailed
    vhost = svc.Vhost()
    db = svc.Database("sqlite", workdir)
    service = svc.Service(db, vhost, workdir)
    endpoint = None
    started = False
    saved = dict(os.environ)
    try:
        service.start()
        client = service.create_client("mpi")
        os.environ.update(svc._sdk_env(client, workdir / "sdk"))
        Executor._default_task_group_id = None
        endpoint = MpiEndpoint(client)
        endpoint.start()
        started = True
        yield endpoint.endpoint_id
    finally:
        failed = not started or request.session.testsfailed > failed_before
        if endpoint:
            endpoint.cleanup(keep_logs_in=workdir if failed else None)
        service.stop()
        os.environ.clear()
        os.environ.update(saved)
        db.drop()
        vhost.delete()
        if failed:
            print(f"\ngc-mpi test logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def executor(endpoint_id: str, spec: dict | None) -> Executor:
    return Executor(endpoint_id=endpoint_id, resource_specification=spec)


def test_num_ranks_2_runs_mpiexec_with_two_ranks(mpi_ep):
    hostname = subprocess.run(["hostname"], capture_output=True, text=True, check=True)
    with executor(mpi_ep, {"num_ranks": 2}) as ex:
        result = ex.submit(MPIFunction("hostname")).result(timeout=120)
        assert result.returncode == 0, result
        assert result.cmd == "$PARSL_MPI_PREFIX hostname"
        assert result.stdout.splitlines() == [hostname.stdout.strip()] * 2, result

        # Each rank reports itself (quoted: expanded by each rank, not by the task's shell):
        # two distinct ranks of a world of two.
        ranks = ex.submit(
            MPIFunction("sh -c 'echo rank $OMPI_COMM_WORLD_RANK of $OMPI_COMM_WORLD_SIZE'")
        ).result(timeout=120)
        assert ranks.returncode == 0, ranks
        assert sorted(ranks.stdout.splitlines()) == ["rank 0 of 2", "rank 1 of 2"], ranks

        # The variables upstream (Parsl's MPI mode) exports for the task.
        env = ex.submit(
            ShellFunction(
                "echo $PARSL_NUM_NODES; echo $PARSL_NUM_RANKS; echo $PARSL_RANKS_PER_NODE; "
                "echo $PARSL_MPI_NODELIST; echo $PARSL_MPI_PREFIX"
            )
        ).result(timeout=120)
        assert env.stdout.splitlines() == [
            "1",
            "2",
            "2",
            "localhost",
            "mpiexec -n 2 --map-by ppr:2:node --host localhost:2",
        ], env


def test_tasks_wait_for_the_block_s_node(mpi_ep):
    # max_workers_per_block: 2 but one node: the second task waits for the first one's node.
    with executor(mpi_ep, {"num_nodes": 1, "ranks_per_node": 3}) as ex:
        futures = [ex.submit(MPIFunction("echo {word}"), word=w) for w in ("a", "b")]
        results = [f.result(timeout=120) for f in futures]
    assert [r.stdout.splitlines() for r in results] == [["a"] * 3, ["b"] * 3], results


@pytest.mark.parametrize(
    "spec, expected",
    [
        (
            {"num_ranks": 2, "gpus": 1},
            "InvalidResourceSpecification: Invalid Resource Specification Supplied: {'gpus'}.",
        ),
        ({"num_ranks": "two"}, "num_ranks must be a positive integer (got \"two\")"),
        (
            None,
            "MPI mode requires optional parsl_resource_specification keyword argument to be "
            "configured",
        ),
        ({"num_nodes": 2, "num_ranks": 2}, "MPINodesUnavailable(requested=2 available=1)"),
    ],
    ids=["unknown-key", "not-a-number", "missing", "too-many-nodes"],
)
def test_invalid_resource_specifications_are_named_errors(mpi_ep, spec, expected):
    with executor(mpi_ep, spec) as ex:
        with pytest.raises(TaskExecutionFailed) as info:
            ex.submit(MPIFunction("hostname")).result(timeout=120)
    assert expected in str(info.value), str(info.value)
