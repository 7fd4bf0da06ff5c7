"""``globus-compute-diagnostic`` (``$GCRS_BIN_DIR/globus-compute-diagnostic``, default
``$CARGO_TARGET_DIR/debug``) against a real site: our gc-service, RabbitMQ, OUR endpoint run as
a throwaway user with a user endpoint that has run tasks from the unmodified SDK.

Secrets are planted where admins leave them -- a broker URL with a password in a YAML file, a
bearer token and a client secret in the endpoint log, an access token in a JSON file, a private
key, secret-named environment variables, the client secret the diagnostic itself runs with --
and the gzip report must contain none of them while still containing the files' other lines.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "gcrs_opsite", Path(__file__).resolve().parent / "opsite.py"
)
opsite = sys.modules.get("gcrs_opsite")
if opsite is None:
    opsite = importlib.util.module_from_spec(_spec)
    sys.modules["gcrs_opsite"] = opsite
    _spec.loader.exec_module(opsite)

pytestmark = pytest.mark.timeout(300)


def bin_dir() -> Path:
    explicit = os.environ.get("GCRS_BIN_DIR")
    if explicit:
        return Path(explicit)
    target = os.environ.get("CARGO_TARGET_DIR") or str(Path(__file__).resolve().parents[3] / "target")
    return Path(target) / "debug"


DIAG = bin_dir() / "globus-compute-diagnostic"

PLANTED = {
    "amqp_password": "PlantedAmqpPw-7731",
    "bearer": "PlantedBearerTok-5521",
    "client_secret_in_log": "PlantedLogSecret-9902",
    "access_token_json": "PlantedAccessTok-4410",
    "private_key": "MIIPlantedPrivateKeyBody0042",
    "env_secret": "PlantedEnvSecret-3310",
}


@pytest.fixture(scope="module")
def site(port_5000):
    with opsite.running_site("diag", ours=True) as s:
        opsite.run_tasks(s.endpoint_id, ok=3, failing=0)
        yield s


def _plant(ep_dir: Path) -> None:
    (ep_dir / "extra_settings.yaml").write_text(
        "display_name: planted settings\n"
        f"broker_url: amqp://gcuser:{PLANTED['amqp_password']}@broker.example.org:5672/%2F\n"
        "private_key: |\n"
        "  -----BEGIN PRIVATE KEY-----\n"
        f"  {PLANTED['private_key']}\n"
        "  -----END PRIVATE KEY-----\n"
    )
    (ep_dir / "tokens_copy.json").write_text(
        '{"resource_server": "funcx_service", '
        f'"access_token": "{PLANTED["access_token_json"]}", "expires_in": 3600}}'
    )
    with open(ep_dir / "endpoint.log", "a") as log:
        log.write(f"2026-01-01 00:00:00,000000 DEBUG x Authorization: Bearer {PLANTED['bearer']}\n")
        log.write(f"2026-01-01 00:00:00,000001 DEBUG x client_secret={PLANTED['client_secret_in_log']}\n")


def _env(site, compute_dir: Path) -> dict:
    env = dict(os.environ)
    env.update(
        {
            "GLOBUS_SDK_ENVIRONMENT": "local",
            "GLOBUS_SDK_SERVICE_URL_AUTH": "http://localhost:5000/auth/",
            "GLOBUS_COMPUTE_CLIENT_ID": site.client["client_id"],
            "GLOBUS_COMPUTE_CLIENT_SECRET": site.client["client_secret"],
            "GLOBUS_COMPUTE_USER_DIR": str(compute_dir),
            "GCRS_BROKER_CREDENTIAL_SECRET": PLANTED["env_secret"],
            "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}",
        }
    )
    return env


def test_report_has_every_section_and_no_secret(site):
    ep_dir = site.endpoint.ep_dir
    _plant(ep_dir)
    compute_dir = ep_dir.parent
    out_dir = Path(tempfile.mkdtemp(prefix="gcrs-diag-out-"))
    r = subprocess.run(
        [str(DIAG), "-r", "5", "-e", site.endpoint_id],
        env=_env(site, compute_dir),
        cwd=out_dir,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == 0, r.stderr
    reports = list(out_dir.glob("globus_compute_diagnostic_*.txt.gz"))
    assert len(reports) == 1, list(out_dir.iterdir())
    assert re.fullmatch(
        r"globus_compute_diagnostic_\d{4}-\d\d-\d\d-\d\d-\d\d-\d\dZ\.txt\.gz", reports[0].name
    )
    assert f"Compressed diagnostic output successfully written to {reports[0].name}" in r.stdout
    text = gzip.decompress(reports[0].read_bytes()).decode()

    leaked = {k: v for k, v in PLANTED.items() if v in text}
    leaked.update({"client_secret": "(the real one)"} if site.client["client_secret"] in text else {})
    assert not leaked, f"secrets in the report: {leaked}"

    # The files are there, minus their secrets.
    assert f"cat {ep_dir / 'extra_settings.yaml'}" in text
    assert "display_name: planted settings" in text
    assert "amqp://gcuser:***@broker.example.org:5672/%2F" in text
    assert '"access_token": "***"' in text
    assert "Authorization: Bearer ***" in text
    assert "GCRS_BROKER_CREDENTIAL_SECRET=***" in text
    assert "GLOBUS_COMPUTE_CLIENT_SECRET=***" in text
    assert f"GLOBUS_COMPUTE_CLIENT_ID={site.client['client_id']}" in text
    # The user endpoint's directory is one of the recent ones, so its log is included.
    assert re.search(r"cat \S+/uep\.[0-9a-f-]+\.[0-9a-f-]+/endpoint\.log\n", text), text[-3000:]

    # Versions, host facts, connectivity, the endpoint CLI against the service.
    for header in [
        "== Diagnostic: uname -a ==",
        "== Diagnostic: globus-compute-endpoint version ==",
        "== Diagnostic: globus-compute-endpoint whoami ==",
        "== Diagnostic: globus-compute-endpoint list ==",
        "== Diagnostic: pip freeze ==",
    ]:
        assert header in text
    assert "Connected successfully to localhost over port 5000!" in text
    assert "Connected successfully to localhost over port 5672!" in text
    assert "AMQP 0-9 broker answered at localhost:5672" in text
    assert "product: RabbitMQ" in text
    assert "GET http://localhost:5000/v2/version?service=all: HTTP 200 OK" in text
    whoami = text.split("globus-compute-endpoint whoami ==", 1)[1].split("== Diagnostic:", 1)[0]
    assert "Username" in whoami and "Email" in whoami, whoami
    assert "globus-compute-sdk==4.19.0" in text
    # -e: the SDK ran the sample function on the endpoint.
    assert "Endpoint simple function execution result:\n  Hello World!" in text


def test_print_only_and_bad_directories(site, tmp_path):
    env = _env(site, site.endpoint.ep_dir.parent)
    r = subprocess.run(
        [str(DIAG), "-p", "-k", "1", "-r", "1"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "== Diagnostic: uname -a ==" in r.stdout
    assert not any(v in r.stdout for v in PLANTED.values())
    assert site.client["client_secret"] not in r.stdout
    assert list(tmp_path.iterdir()) == []

    r = subprocess.run(
        [str(DIAG), "-c", str(tmp_path / "nope")], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 66
    assert r.stderr.strip() == f"{tmp_path / 'nope'} is not a valid directory"

    r = subprocess.run(
        [str(DIAG), "-r", "0", "-l", "no-such-endpoint"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 66
    assert "Could not locate endpoint no-such-endpoint as" in r.stderr
