"""The Python worker, in-process and as a process behind its frame channel.

Where upstream's own ``execute_task`` (globus-compute-endpoint 4.19.0, installed beside the
SDK) can run the same payload, the worker's answer is compared with upstream's ``Result``.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from globus_compute_common import messagepack
from globus_compute_common.messagepack.message_types import Task
from globus_compute_endpoint.engines.helper import execute_task
from globus_compute_sdk.errors import TaskExecutionFailed
from globus_compute_sdk.serialize import ComputeSerializer

from globus_compute_rs_worker import worker

# Put on sys.path by this directory's conftest.py.
WORKER_ROOT = Path(worker.__file__).resolve().parents[1]

SERDE = ComputeSerializer()

SOURCE = '''
import os

def add(a, b=0):
    return a + b

def inner(x):
    raise ValueError(f"bad value {x}")

def outer(x):
    return inner(x)

def fails(x):
    raise ValueError(f"bad value {x}")

def big(n):
    return "x" * n

def cwd_and_env():
    return os.getcwd(), os.environ.get("GC_TASK_UUID"), os.environ.get("GC_TASK_SANDBOX_DIR")

def make_closure(k):
    def scaled(v):
        return v * k
    return scaled

def unpicklable():
    return (x for x in range(3))

def chatty():
    print("user output on stdout")
    os.write(1, b"raw write to fd 1\\n")
    return "quiet channel"
'''


def _namespace() -> dict:
    # Functions of ``__main__`` are serialized by value, as the SDK does for a user's script.
    ns: dict = {"__name__": "__main__"}
    exec(compile(SOURCE, "<user code>", "exec"), ns)
    return ns


NS = _namespace()


def payload(fn, *args, **kwargs) -> str:
    """``task_buffer`` as the service builds it: ``function_code + payload`` (PS §5.3)."""
    fn_code = SERDE.pack_buffers([SERDE.serialize(fn)])
    data = SERDE.pack_buffers([SERDE.serialize(args), SERDE.serialize(kwargs)])
    return fn_code + data


def upstream(task_buffer: str, run_dir: str, result_serializers=None) -> dict:
    tid = uuid.uuid4()
    body = messagepack.pack(Task(task_id=tid, task_buffer=task_buffer))
    res = messagepack.unpack(
        execute_task(body, tid, run_dir=run_dir, result_serializers=result_serializers)
    )
    ed = res.error_details
    return {
        "data": res.data,
        "code": ed.code if ed else None,
        "user_message": ed.user_message if ed else None,
    }


def ours(runner: worker.TaskRunner, task_buffer: str, result_serializers=()) -> dict:
    out = runner.run(str(uuid.uuid4()), task_buffer, result_serializers)
    return {"data": out.data, "code": out.code, "user_message": out.user_message}


@pytest.fixture
def runner(tmp_path):
    cwd = os.getcwd()
    yield worker.TaskRunner(run_dir=str(tmp_path))
    os.chdir(cwd)


@pytest.mark.parametrize(
    "case",
    [
        ("add", (1, 2), {}),
        ("add", (1,), {"b": 41}),
        ("fails", (3,), {}),
        ("outer", (4,), {}),
        ("big", (11 * 1024 * 1024,), {}),
        ("unpicklable", (), {}),
    ],
    ids=["args", "kwargs", "raise", "raise-deeper", "too-big", "unserializable-result"],
)
def test_same_answer_as_upstream(runner, tmp_path, case):
    name, args, kwargs = case
    buf = payload(NS[name], *args, **kwargs)
    try:
        assert ours(runner, buf) == upstream(buf, str(tmp_path))
    finally:
        os.environ.pop("GC_TASK_UUID", None)


def test_same_answer_as_upstream_for_requested_serializer(runner, tmp_path):
    buf = payload(NS["add"], 5, b=6)
    wanted = ["globus_compute_sdk.serialize.JSONData"]
    got = ours(runner, buf, wanted)
    assert got == upstream(buf, str(tmp_path), wanted)
    assert got["data"] == "11\n11"


def test_disallowed_deserializer_same_as_upstream(tmp_path):
    allowed = ["globus_compute_sdk.serialize.PureSourceTextInspect", "globus_compute_sdk.*Data"]
    r = worker.TaskRunner(run_dir=str(tmp_path), allowed_deserializers=allowed)
    buf = payload(NS["add"], 1, 2)
    tid = uuid.uuid4()
    body = messagepack.pack(Task(task_id=tid, task_buffer=buf))
    up = messagepack.unpack(
        execute_task(body, tid, run_dir=str(tmp_path), task_deserializers=allowed)
    )
    got = ours(r, buf)
    assert got["data"] == up.data
    assert "Code serializer DillCode disabled by current configuration" in got["data"]


def test_sdk_raises_the_traceback(runner):
    got = ours(runner, payload(NS["outer"], 7))
    assert got["code"] == "RemoteExecutionError"
    text = str(TaskExecutionFailed(got["data"]))
    assert "ValueError: bad value 7" in text
    assert 'File "<user code>"' in text and "in inner" in text


def test_closure_and_cache(runner):
    scaled = NS["make_closure"](3)
    for v in range(3):
        got = ours(runner, payload(scaled, v))
        assert SERDE.deserialize(got["data"]) == v * 3
    assert len(runner._functions) == 1


def test_directory_and_environment(tmp_path):
    r = worker.TaskRunner(run_dir=str(tmp_path), run_in_sandbox=True)
    tid = str(uuid.uuid4())
    cwd = os.getcwd()
    try:
        out = r.run(tid, payload(NS["cwd_and_env"]), ())
    finally:
        os.chdir(cwd)
    sandbox = str(tmp_path / tid)
    assert SERDE.deserialize(out.data) == (sandbox, tid, sandbox)


def test_relative_run_dir_rejected():
    with pytest.raises(ValueError, match="Absolute path required"):
        worker.TaskRunner(run_dir="relative")


# --- the process behind its channel ------------------------------------------------------


def frame(header: dict, blob: bytes = b"") -> bytes:
    import json

    h = json.dumps(header).encode()
    return struct.pack(">I", 4 + len(h) + len(blob)) + struct.pack(">I", len(h)) + h + blob


def read(stream) -> tuple[dict, bytes]:
    import json

    (n,) = struct.unpack(">I", stream.read(4))
    body = stream.read(n)
    (h,) = struct.unpack(">I", body[:4])
    return json.loads(body[4 : 4 + h]), body[4 + h :]


def spawn():
    env = dict(os.environ, PYTHONPATH=str(WORKER_ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "globus_compute_rs_worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def test_process_round_trip_and_user_output_kept_off_channel(tmp_path):
    p = spawn()
    try:
        init = {"type": "init", "protocol": 1, "run_dir": str(tmp_path)}
        p.stdin.write(frame(init))
        p.stdin.flush()
        hdr, _ = read(p.stdout)
        assert hdr["type"] == "ready" and hdr["pid"] == p.pid
        assert hdr["details"]["globus_compute_sdk_version"] == "4.19.0"
        for fn, args in ((NS["chatty"], ()), (NS["add"], (20, 22))):
            tid = str(uuid.uuid4())
            task = {"type": "task", "task_id": tid, "result_serializers": []}
            p.stdin.write(frame(task, payload(fn, *args).encode()))
            p.stdin.flush()
            hdr, blob = read(p.stdout)
            assert hdr["task_id"] == tid and hdr["outcome"] == "success"
            assert hdr["exec_start"] <= hdr["exec_end"]
        assert SERDE.deserialize(blob.decode()) == 42
        p.stdin.close()
        assert p.wait(timeout=30) == 0
        err = p.stderr.read()
        assert b"user output on stdout" in err and b"raw write to fd 1" in err
    finally:
        p.kill()
        p.wait()


def test_process_rejects_bad_allowlist(tmp_path):
    p = spawn()
    try:
        init = {
            "type": "init",
            "protocol": 1,
            "run_dir": str(tmp_path),
            "allowed_deserializers": ["no.such.Strategy"],
        }
        out, _ = p.communicate(frame(init), timeout=30)
        n = struct.unpack(">I", out[:4])[0]
        assert len(out) == 4 + n
        import io

        hdr, _ = read(io.BytesIO(out))
        assert hdr["type"] == "fatal" and "Invalid strategy-like 'no.such.Strategy'" in hdr["message"]
        assert p.returncode == worker.EXIT_INIT_REJECTED
    finally:
        p.kill()
        p.wait()


def test_process_protocol_error(tmp_path):
    p = spawn()
    try:
        _, err = p.communicate(struct.pack(">I", 2) + b"xx", timeout=30)
        assert p.returncode == worker.EXIT_PROTOCOL_ERROR
        assert b"protocol error" in err
    finally:
        p.kill()
        p.wait()


def _sleeper(seconds):
    import time

    # Short sleeps: the timeout interrupts between bytecodes, not inside one long sleep.
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)
    return "finished"


@pytest.mark.parametrize("with_parsl", [True, False], ids=["parsl", "no-parsl"])
def test_task_timeout(runner, monkeypatch, with_parsl):
    monkeypatch.setenv("GC_TASK_TIMEOUT", "0.2")
    if not with_parsl:
        # A worker environment without Parsl gets the module's own equivalent.
        monkeypatch.setitem(sys.modules, "parsl.app.python", None)
    sleeper = NS["add"].__class__(_sleeper.__code__, NS)
    got = ours(runner, payload(sleeper, 30))
    assert got["code"] == "RemoteExecutionError"
    last = got["data"].rstrip().split("\n")[-1]
    expected = "AppTimeout" if with_parsl else "globus_compute_rs_worker.worker.TaskTimeout"
    assert last.split(":")[0].endswith(expected), got["data"]


def test_process_survives_unencodable_error_text(tmp_path):
    def bad_text():
        raise ValueError("\ud800 lone surrogate")

    fn = NS["add"].__class__(bad_text.__code__, NS)
    p = spawn()
    try:
        p.stdin.write(frame({"type": "init", "protocol": 1, "run_dir": str(tmp_path)}))
        p.stdin.write(frame({"type": "task", "task_id": "t"}, payload(fn).encode()))
        p.stdin.flush()
        assert read(p.stdout)[0]["type"] == "ready"
        hdr, blob = read(p.stdout)
        assert hdr["outcome"] == "failure"
        assert "ValueError: \\ud800 lone surrogate" in blob.decode("utf-8")
    finally:
        p.kill()
        p.wait()


# ---------------------------------------------------------------------------------------
# The submitter's runtime (docs/troubleshooting.md, issue #10)
# ---------------------------------------------------------------------------------------


def _runtime(version: str, sdk: str = "4.19.0") -> dict:
    """A ``user_runtime`` as the SDK's ``create_user_runtime()`` builds it, with the Python
    version replaced (only one Python is installed here)."""
    import dataclasses

    from globus_compute_sdk.sdk.batch import create_user_runtime

    rt = dataclasses.asdict(create_user_runtime())
    rt = __import__("json").loads(__import__("json").dumps(rt))
    parts = [int(p) for p in version.split(".")]
    rt["python"]["version"] = version
    rt["python"]["version_tuple"] = parts
    rt["python"]["version_info"] = parts + ["final", 0]
    rt["python_version"] = f"{version} (main) [GCC]"
    rt["globus_compute_sdk_version"] = sdk
    return rt


def _here() -> str:
    import platform

    return platform.python_version()


def test_other_python_minor_fails_before_deserializing(runner):
    major, minor, _ = (int(p) for p in _here().split("."))
    other = f"{major}.{minor + 1}.0"
    # A payload that would crash the deserializer shows that nothing was deserialized.
    out = runner.run(str(uuid.uuid4()), "garbage", (), None, _runtime(other))
    assert out.outcome == "failure"
    assert out.code == "EnvironmentMismatch"
    assert f"submitted from Python {other}" in out.data
    assert f"workers run Python {_here()}" in out.data
    assert "worker_init" in out.data and "virtual environment" in out.data
    # The worker keeps serving tasks.
    ok = runner.run(str(uuid.uuid4()), payload(NS["add"], 1, 2), (), None, _runtime(_here()))
    assert ok.outcome == "success" and ok.warning is None
    assert SERDE.deserialize(ok.data) == 3


def test_compatible_difference_runs_with_a_warning(runner):
    major, minor, micro = (int(p) for p in _here().split("."))
    other = f"{major}.{minor}.{micro + 1}"
    out = runner.run(
        str(uuid.uuid4()), payload(NS["add"], 2, 3), (), None, _runtime(other, sdk="4.18.0")
    )
    assert out.outcome == "success"
    assert SERDE.deserialize(out.data) == 5
    assert f"Python {other} vs {_here()}" in out.warning
    assert "globus-compute-sdk 4.18.0 vs 4.19.0" in out.warning


def test_undeserializable_payload_under_a_different_runtime_names_both(runner):
    major, minor, micro = (int(p) for p in _here().split("."))
    rt = _runtime(f"{major}.{minor}.{micro + 1}", sdk="9.0.0")
    # A serializer identifier this SDK does not know, as a newer SDK might send.
    buf = "11\n99\nxxxxxxxx\n" + SERDE.pack_buffers([SERDE.serialize(()), SERDE.serialize({})])
    out = runner.run(str(uuid.uuid4()), buf, (), None, rt)
    assert out.outcome == "failure"
    assert "could not be deserialized" in out.data
    assert "globus-compute-sdk 9.0.0" in out.data and "dill " in out.data


def test_process_reports_the_mismatch_and_the_warning(tmp_path):
    major, minor, micro = (int(p) for p in _here().split("."))
    p = spawn()
    try:
        p.stdin.write(frame({"type": "init", "protocol": 1, "run_dir": str(tmp_path)}))
        p.stdin.flush()
        assert read(p.stdout)[0]["type"] == "ready"
        for version, expect in (
            (f"{major}.{minor + 1}.0", "failure"),
            (f"{major}.{minor}.{micro + 1}", "success"),
        ):
            task = {
                "type": "task",
                "task_id": str(uuid.uuid4()),
                "result_serializers": [],
                "user_runtime": _runtime(version),
            }
            p.stdin.write(frame(task, payload(NS["add"], 1, 1).encode()))
            p.stdin.flush()
            hdr, blob = read(p.stdout)
            assert hdr["outcome"] == expect, blob
            if expect == "failure":
                assert hdr["code"] == "EnvironmentMismatch" and "warning" not in hdr
            else:
                assert f"Python {version}" in hdr["warning"]
        p.stdin.close()
        assert p.wait(timeout=30) == 0
    finally:
        p.kill()
        p.wait()
