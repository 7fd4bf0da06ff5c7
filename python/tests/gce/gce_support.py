"""Helpers shared by the GlobusComputeEngine end-to-end tests: the service fixtures of
``python/tests/service/conftest.py``, our endpoint with a GlobusComputeEngine template (run as a
throwaway user, ``gc-worker-manager`` beside the endpoint binary), and the Slurm check."""

from __future__ import annotations

import contextlib
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


def manager_bin() -> Path:
    """``gc-worker-manager`` from ``GCRS_BIN_DIR``, else beside our endpoint binary."""
    explicit = os.environ.get("GCRS_BIN_DIR")
    base = Path(explicit) if explicit else Path(svc.endpoint_bin()).parent
    return base / "gc-worker-manager"


class GceEndpoint(svc.OurEndpoint):
    """Our endpoint with a GlobusComputeEngine template, and ``gc-worker-manager`` copied
    beside the copied endpoint binary (where the user endpoint looks for it first)."""

    NAME = "gcrs-gce-ep"

    def __init__(self, client: dict, template: str, config_extra: str = ""):
        super().__init__(client, config_extra)
        (self.ep_dir / "user_config_template.yaml.j2").write_text(template)
        bindir = self.root / "bin"
        bindir.mkdir(exist_ok=True)
        shutil.copy2(manager_bin(), bindir / "gc-worker-manager")
        (bindir / "gc-worker-manager").chmod(0o755)
        bindir.chmod(0o755)
        if self.user:
            subprocess.run(["chown", "-R", self.user, str(self.home)], check=True)


@contextlib.contextmanager
def gce_site(request, template: str, prefix: str, config_extra: str = ""):
    """Service (SQLite) + client + our endpoint; yields the endpoint. Logs are kept in
    /tmp/<prefix>* when a test failed."""
    from globus_compute_sdk import Executor

    if not manager_bin().is_file():
        pytest.fail(f"{manager_bin()} is missing: run cargo build --workspace")
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    failed_before = request.session.testsfailed
    vhost = svc.Vhost()
    db = svc.Database("sqlite", workdir)
    service = svc.Service(db, vhost, workdir)
    endpoint = None
    saved = dict(os.environ)
    raised = False
    try:
        service.start()
        client = service.create_client("gce")
        os.environ.update(svc._sdk_env(client, workdir / "sdk"))
        Executor._default_task_group_id = None
        endpoint = GceEndpoint(client, template, config_extra)
        endpoint.start()
        yield endpoint
    except BaseException:
        raised = True
        raise
    finally:
        failed = raised or request.session.testsfailed > failed_before
        if endpoint:
            endpoint.cleanup(keep_logs_in=workdir if failed else None)
        service.stop()
        os.environ.clear()
        os.environ.update(saved)
        db.drop()
        vhost.delete()
        if failed:
            print(f"\ngc-gce test logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def slurm_up() -> bool:
    try:
        out = subprocess.run(
            ["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and any(s in out.stdout for s in ("idle", "mixed", "alloc"))


def require_slurm() -> None:
    """Skip without a Slurm node, or fail when ``GCRS_REQUIRE_SLURM`` says there must be one."""
    if not slurm_up():
        if os.environ.get("GCRS_REQUIRE_SLURM"):
            pytest.fail("GCRS_REQUIRE_SLURM is set but no Slurm node is up (run scripts/slurm.sh)")
        pytest.skip("no Slurm node is up (run scripts/slurm.sh)")


def by_value(source: str) -> dict:
    """Functions defined in a namespace named ``__main__``, so dill ships them by value."""
    namespace = {"__name__": "__main__"}
    exec(source, namespace)
    return namespace
