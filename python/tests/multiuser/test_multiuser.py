"""The multi-user endpoint as root (ENDPOINT.md §4.4-§4.6), end to end and all real: OUR
``globus-compute-endpoint start`` run by this test as root against our gc-service (SQLite, a
fresh RabbitMQ vhost), an identity-mapping file, Linux users and groups created here and
removed afterwards, PAM off and on (a service file in /etc/pam.d written by the test), and one
unmodified-SDK client per Globus identity, each in its own process.

Each identity submits ``probe``, which reports, from inside the worker: ids, groups, user name,
environment, the ``/proc/<pid>/status`` of the worker and of its parent (the user endpoint) and
the owner and mode of a file it creates. The identities cover: a plain user, a user with
supplementary groups, a user without a home directory, a locked and expired account, an
identity without a mapping, a mapping to a user that does not exist, a mapping to root, a
schema violation, a reserved option name and an option carrying Jinja/YAML syntax.

Skipped unless run as root on Linux with RabbitMQ on 127.0.0.1:5672.
"""

from __future__ import annotations

import concurrent.futures
import grp
import importlib.util
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "gcrs_service_conftest_mu", Path(__file__).resolve().parents[1] / "service" / "conftest.py"
)
svc = importlib.util.module_from_spec(_spec)
sys.modules["gcrs_service_conftest_mu"] = svc
_spec.loader.exec_module(svc)

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(os.geteuid() != 0, reason="the multi-user endpoint runs as root"),
]

TAG = uuid.uuid4().hex[:6]
NAME = "gcrs-mu-ep"
VENV_BIN = Path(sys.executable).parent
NOT_ROOT_TEXT = "unexpected error; this is due to either an endpoint misconfiguration"

# The function every identity runs, shipped by value (defined in a "__main__" namespace).
PROBE = '''
def probe(path_hint):
    import getpass, os
    def status(pid):
        return open(f"/proc/{pid}/status").read()
    def fds(pid):
        out = {}
        for n in os.listdir(f"/proc/{pid}/fd"):
            try:
                out[int(n)] = os.readlink(f"/proc/{pid}/fd/{n}")
            except OSError:
                pass
        return out
    def raw(path):
        try:
            return open(path, "rb").read().decode(errors="replace")
        except OSError as e:
            return f"unreadable: {e}"
    fn = f"/tmp/gcrs-mu-probe-{os.getpid()}-{path_hint}"
    with open(fn, "w") as f:
        f.write("x")
    st = os.stat(fn)
    os.unlink(fn)
    return {
        "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "egid": os.getegid(),
        "groups": sorted(os.getgroups()), "user": getpass.getuser(), "env": dict(os.environ),
        "status": status(os.getpid()), "parent_status": status(os.getppid()),
        "file": [st.st_uid, st.st_gid, st.st_mode & 0o777], "cwd": os.getcwd(),
        "fds": fds(os.getpid()), "parent_fds": fds(os.getppid()),
        "parent_cmdline": raw(f"/proc/{os.getppid()}/cmdline"),
        "parent_environ": raw(f"/proc/{os.getppid()}/environ"),
    }
'''

SUBMIT = r'''
import json, sys
ns = {"__name__": "__main__"}
exec(sys.argv[3], ns)
from globus_compute_sdk import Executor
try:
    with Executor(endpoint_id=sys.argv[1], user_endpoint_config=json.loads(sys.argv[2])) as ex:
        r = ex.submit(ns["probe"], "p").result(timeout=120)
    print(json.dumps({"ok": r}))
except Exception as e:
    print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
'''


def run(*argv: str) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (argv, r.stderr)
    return r.stdout


class Users:
    """Linux users and groups for the matrix, removed by ``remove``."""

    def __init__(self, root: Path):
        self.created: list[str] = []
        self.groups: list[str] = []
        homes = root / "homes"
        homes.mkdir()
        homes.chmod(0o755)

        def user(key: str, *extra: str, home: bool = True) -> str:
            name = f"gcmu{TAG}{key}"
            d = homes / name
            args = ["-m", "-d", str(d)] if home else ["-M", "-d", f"/nonexistent/{name}"]
            run("useradd", "-s", "/bin/sh", *args, *extra, name)
            self.created.append(name)
            return name

        for g in ("x", "y"):
            run("groupadd", f"gcmu{TAG}g{g}")
            self.groups.append(f"gcmu{TAG}g{g}")
        self.plain = user("a")
        self.grouped = user("b", "-G", ",".join(self.groups))
        self.nohome = user("c", home=False)
        self.locked = user("d")
        run("usermod", "-L", "-e", "1970-01-02", self.locked)

    def remove(self):
        for name in self.created:
            subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
        for name in self.created:
            subprocess.run(["userdel", "-r", name], capture_output=True)
        for g in self.groups:
            subprocess.run(["groupdel", g], capture_output=True)


@pytest.fixture(scope="module")
def users():
    root = Path(tempfile.mkdtemp(prefix="gcrs-mu-users-"))
    root.chmod(0o755)
    u = Users(root)
    try:
        yield u
    finally:
        u.remove()
        shutil.rmtree(root, ignore_errors=True)


class MultiUserEndpoint:
    """Our MEP as root, with a mapping file from client ids to local user names."""

    def __init__(self, root: Path, admin: dict, mapping: dict[str, str], pam_service: str | None):
        self.root = root
        root.mkdir(mode=0o755)
        self.bin = root / "bin" / "globus-compute-endpoint"
        self.bin.parent.mkdir()
        shutil.copy2(svc.endpoint_bin(), self.bin)
        self.bin.parent.chmod(0o755)
        self.compute_dir = root / "mep"
        self.ep_dir = self.compute_dir / NAME
        self.ep_dir.mkdir(parents=True)
        idmap = self.ep_dir / "identity_mapping.json"
        idmap.write_text(
            json.dumps(
                [
                    {
                        "DATA_TYPE": "expression_identity_mapping#1.0.0",
                        "mappings": [
                            {"source": "{id}", "match": cid, "output": user}
                            for cid, user in mapping.items()
                        ],
                    }
                ]
            )
        )
        pam = f"pam:\n  enable: true\n  service_name: {pam_service}\n" if pam_service else ""
        (self.ep_dir / "config.yaml").write_text(
            "display_name: gcrs multi-user test\n"
            "local_compute_services: true\n"
            "heartbeat_period: 5\n"
            "email: admin@example.org\n"
            f"identity_mapping_config_path: {idmap}\n" + pam
        )
        (self.ep_dir / "user_config_template.yaml.j2").write_text(
            "heartbeat_period: 5\n"
            "idle_heartbeats_soft: 12\n"
            "idle_heartbeats_hard: 120\n"
            "# note: {{ note|default('none') }}\n"
            "engine:\n"
            "  type: ThreadPoolEngine\n"
            "  max_workers: {{ workers|default(1) }}\n"
        )
        (self.ep_dir / "user_config_schema.json").write_text(
            json.dumps(
                {
                    "type": "object",
                    "properties": {"workers": {"type": "integer"}, "note": {"type": "string"}},
                    "additionalProperties": False,
                }
            )
        )
        (self.ep_dir / "user_environment.yaml").write_text(
            f"PATH: {VENV_BIN}:/usr/local/bin:/usr/bin:/bin\nSITE_VAR: 42\n"
        )
        for p in [root, self.compute_dir, self.ep_dir]:
            p.chmod(0o700 if p != root else 0o755)
        self.env = {
            "HOME": str(root),
            "PATH": f"{VENV_BIN}:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "GLOBUS_COMPUTE_USER_DIR": str(self.compute_dir),
            "GLOBUS_SDK_ENVIRONMENT": "local",
            "GLOBUS_SDK_SERVICE_URL_AUTH": "http://localhost:5000/auth/",
            "GLOBUS_COMPUTE_CLIENT_ID": admin["client_id"],
            "GLOBUS_COMPUTE_CLIENT_SECRET": admin["client_secret"],
            "GCRS_ROOT_ONLY_VARIABLE": "must-not-leak",
        }
        self.proc: subprocess.Popen | None = None

    def start(self):
        self.out = open(self.root / "mep.out", "a")
        self.proc = subprocess.Popen(
            [str(self.bin), "start", NAME],
            env=self.env,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            start_new_session=True,
        )
        ep_json = self.ep_dir / "endpoint.json"

        def registered():
            if self.proc.poll() is not None:
                raise AssertionError(f"MEP exited: {(self.root / 'mep.out').read_text()}")
            return ep_json.exists() and json.loads(ep_json.read_text() or "{}").get("endpoint_id")

        self.endpoint_id = svc.wait_for(registered, 30, "the MEP to register")

    def log(self) -> str:
        p = self.ep_dir / "endpoint.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def submit(client: dict, endpoint_id: str, workdir: Path, user_config: dict) -> dict:
    env = dict(
        os.environ,
        **svc._sdk_env(client, workdir / f"sdk-{client['client_id']}"),
    )
    r = subprocess.run(
        [sys.executable, "-c", SUBMIT, endpoint_id, json.dumps(user_config), PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=200,
    )
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert lines, (r.stdout, r.stderr)
    return json.loads(lines[-1])


def status_fields(text: str) -> dict[str, str]:
    return dict(
        (k, v.strip()) for k, _, v in (ln.partition(":") for ln in text.splitlines()) if v
    )


@pytest.fixture(scope="module", params=["pam-off", "pam-on"])
def outcomes(request, users, port_5000):
    """One service + root MEP per PAM setting; every identity's submission, run in parallel."""
    pam = request.param == "pam-on"
    workdir = Path(tempfile.mkdtemp(prefix=f"gcrs-mu-{request.param}-"))
    workdir.chmod(0o755)
    pam_file = Path(f"/etc/pam.d/gcrs-mu-{TAG}")
    if pam:
        pam_file.write_text("account required pam_unix.so\nsession required pam_unix.so\n")
    vhost = svc.Vhost()
    db = svc.Database("sqlite", workdir)
    service = svc.Service(db, vhost, workdir)
    mep = None
    ok = False
    try:
        service.start()
        admin = service.create_client("mu-admin")
        names = ["plain", "grouped", "nohome", "locked", "unmapped", "ghost", "root"]
        clients = {n: service.create_client(f"mu-{n}") for n in names}
        local = {
            "plain": users.plain,
            "grouped": users.grouped,
            "nohome": users.nohome,
            "locked": users.locked,
            "ghost": f"gcmu{TAG}nosuchuser",
            "root": "root",
        }
        mapping = {clients[k]["client_id"]: v for k, v in local.items()}
        mep = MultiUserEndpoint(
            workdir / "site", admin, mapping, pam_file.name if pam else None
        )
        mep.start()
        cases = {n: (clients[n], {}) for n in names}
        cases["schema"] = (clients["plain"], {"bogus": 1})
        cases["reserved"] = (clients["plain"], {"parent_config": "x"})
        cases["inject"] = (
            clients["grouped"],
            {"note": "x\nengine:\n  type: Bogus {{ 7 * 7 }} {% raw %}", "workers": 2},
        )
        with concurrent.futures.ThreadPoolExecutor(len(cases)) as pool:
            futures = {
                k: pool.submit(submit, c, mep.endpoint_id, workdir, cfg)
                for k, (c, cfg) in cases.items()
            }
            results = {k: f.result() for k, f in futures.items()}
        # The endpoint still serves after all the failures.
        results["again"] = submit(clients["plain"], mep.endpoint_id, workdir, {"workers": 1})
        assert mep.proc.poll() is None, mep.log()[-4000:]
        yield {"pam": pam, "users": users, "results": results, "mep": mep, "workdir": workdir}
        ok = True
    finally:
        if mep:
            mep.stop()
            if not ok:
                print(f"\nMEP log:\n{mep.log()[-6000:]}", file=sys.stderr)
        service.stop()
        db.drop()
        vhost.delete()
        pam_file.unlink(missing_ok=True)
        for name in users.created:
            subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"\nmulti-user test files kept in {workdir}", file=sys.stderr)


def expected_groups(user: str) -> list[int]:
    pw = pwd.getpwnam(user)
    return sorted(set(os.getgrouplist(user, pw.pw_gid)))


def check_runs_as(result: dict, user: str, pam: bool):
    assert "ok" in result, result
    r = result["ok"]
    pw = pwd.getpwnam(user)
    assert (r["uid"], r["euid"], r["gid"], r["egid"]) == (pw.pw_uid,) * 2 + (pw.pw_gid,) * 2
    assert r["groups"] == expected_groups(user)
    assert r["user"] == user
    assert r["file"] == [pw.pw_uid, pw.pw_gid, 0o600], "owned by the user, umask 077"
    for text in (r["status"], r["parent_status"]):
        st = status_fields(text)
        assert st["Uid"].split() == [str(pw.pw_uid)] * 4
        assert st["Gid"].split() == [str(pw.pw_gid)] * 4
        for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
            assert int(st[cap], 16) == 0, (cap, st[cap])
        # no_new_privs only on the capability path (upstream sets none on the PAM path).
        assert st["NoNewPrivs"] == ("0" if pam else "1")
    env = r["env"]
    assert "GCRS_ROOT_ONLY_VARIABLE" not in env
    assert not any(k.startswith("GLOBUS_COMPUTE_CLIENT") for k in env), sorted(env)
    assert env["HOME"] == pw.pw_dir and env["USER"] == user
    assert env["SITE_VAR"] == "42"
    assert env["PATH"].startswith(str(VENV_BIN))
    assert env["GLOBUS_COMPUTE_ENDPOINT_DIR"].startswith(f"{pw.pw_dir}/.globus_compute/uep.")
    documented = {
        "CWD", "GC_USER_PYTHON_VERSION", "GC_USER_SDK_VERSION", "GLOBUS_COMPUTE_ENDPOINT_DIR",
        "GLOBUS_COMPUTE_ENDPOINT_NAME", "GLOBUS_COMPUTE_LOG_PATH", "HOME", "USER", "PATH",
        "SITE_VAR",
    }
    extra = set(env) - documented
    assert all(k.startswith(("GC_", "GCRS_WORKER", "PYTHON", "LC_CTYPE")) for k in extra), extra
    uep_dir = Path(env["GLOBUS_COMPUTE_ENDPOINT_DIR"])
    assert uep_dir.stat().st_uid == pw.pw_uid and (uep_dir.stat().st_mode & 0o777) == 0o700
    check_descriptors_and_secrets(r)


def check_descriptors_and_secrets(r: dict):
    """The broker credentials reach the UEP only encrypted in the memfd at 3 (PE §5.3-§5.4):
    not in its argv or environment, nor the worker's; the UEP closes the memfd once read (so a
    memfd, if any, is at 3 only) and it never reaches the worker; the UEP holds exactly one
    handle on its stdin pipe (the bootstrap's copy was close-on-exec) and nothing under the
    MEP's directory."""
    parent = {int(k): v for k, v in r["parent_fds"].items()}
    own = {int(k): v for k, v in r["fds"].items()}
    assert all(n == 3 for n, v in parent.items() if v.startswith("/memfd:")), parent
    assert parent[0].startswith("pipe:"), parent
    assert list(parent.values()).count(parent[0]) == 1, ("stdin pipe leaked", parent)
    assert not any(v.startswith("/memfd:") for v in own.values()), own
    assert parent[0] not in own.values(), own
    assert not any("/mep/" in v or v.endswith("/mep.out") for v in parent.values()), parent
    for text in (r["parent_cmdline"], r["parent_environ"], json.dumps(r["env"])):
        assert "amqp://" not in text and "amqps://" not in text, text[:400]


def test_mapped_users_run_as_themselves(outcomes):
    res, u, pam = outcomes["results"], outcomes["users"], outcomes["pam"]
    check_runs_as(res["plain"], u.plain, pam)
    check_runs_as(res["grouped"], u.grouped, pam)
    assert len(res["grouped"]["ok"]["groups"]) == 3
    check_runs_as(res["again"], u.plain, pam)


def test_locked_account_runs_without_pam_and_is_denied_with_pam(outcomes):
    res, u = outcomes["results"], outcomes["users"]
    if outcomes["pam"]:
        err = res["locked"].get("error", "")
        assert f"Unable to start user endpoint process for {u.locked}" in err, res["locked"]
        assert "[exit code: 71; (PermissionError) see your system administrator]" in err
        assert "PAM_ACCT_EXPIRED" in outcomes["mep"].log()
    else:
        check_runs_as(res["locked"], u.locked, False)


def test_user_without_home_gets_a_clear_error(outcomes):
    err = outcomes["results"]["nohome"].get("error", "")
    assert f"Unable to start user endpoint process for {outcomes['users'].nohome}" in err, err
    assert "[exit code: 79; (OSError)" in err


def test_identity_errors_reach_the_sdk(outcomes):
    res = outcomes["results"]
    assert "Identity failed to map to a local user name." in res["unmapped"].get("error", "")
    ghost = res["ghost"].get("error", "")
    assert "Identity mapped to a local user name, but local user does not exist." in ghost
    assert f"gcmu{TAG}nosuchuser" in ghost
    assert NOT_ROOT_TEXT in res["root"].get("error", "")
    assert "Requested UID is same as Core Endpoint UID" in outcomes["mep"].log()


def test_template_errors_reach_the_sdk(outcomes):
    res = outcomes["results"]
    err = res["schema"].get("error", "")
    assert "[exit code: 77; (ValidationError) Additional properties are not allowed" in err, err
    err = res["reserved"].get("error", "")
    assert "'parent_config' is a reserved word and cannot be passed in via user config" in err


def test_template_injection_is_inert(outcomes):
    check_runs_as(outcomes["results"]["inject"], outcomes["users"].grouped, outcomes["pam"])


def test_shutdown_stops_every_user_endpoint(outcomes):
    """SIGTERM to the MEP: exit 0, and no process of any mapped user is left (UEPs and their
    workers; ENDPOINT §4.7). Runs last for each PAM setting."""
    mep, u = outcomes["mep"], outcomes["users"]
    running = subprocess.run(["pgrep", "-u", u.plain], capture_output=True, text=True)
    assert running.stdout.split(), "the plain user's UEP should still be running"
    mep.stop()
    assert mep.proc.returncode == 0, mep.log()[-3000:]

    def gone():
        r = subprocess.run(["pgrep", "-u", ",".join(u.created)], capture_output=True, text=True)
        return not r.stdout.split()

    svc.wait_for(gone, 25, "every user endpoint process to exit")
    assert "Shutdown complete." in mep.log()
