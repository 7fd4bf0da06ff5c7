"""One SDK script, two endpoints: the unmodified upstream endpoint 4.19.0 and ours.

Every test body below runs once against each kind (``upstream`` first, then ``ours``), in the
same pytest run, against our gc-service (SQLite, a fresh RabbitMQ vhost). Each kind is one
core endpoint (MEP) started as a throwaway unprivileged user with the same
``user_config_template.yaml.j2``; the Executor's ``user_endpoint_config`` selects what a test
needs (another engine, an allow-list, idle shutdown, an ``endpoint_setup`` command), and each
distinct configuration makes the MEP start its own user endpoint (UEP).

Each test compares with fixed expected values, and also records a normalised observation per
kind; ``test_both_kinds_observed_the_same`` (last) asserts that both kinds observed the same
thing wherever both ran. Where the two legitimately differ, the test says so in a comment and
records only what they share.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

_NAME = "gcrs_service_conftest"
svc = sys.modules.get(_NAME)
if svc is None:
    _spec = importlib.util.spec_from_file_location(
        _NAME, Path(__file__).resolve().parents[1] / "service" / "conftest.py"
    )
    svc = importlib.util.module_from_spec(_spec)
    sys.modules[_NAME] = svc
    _spec.loader.exec_module(svc)

# Per test, not counting fixtures: the port-5000 lock may be held by other test runs.
pytestmark = pytest.mark.timeout(240, func_only=True)

KINDS = ["upstream", "ours"]

# What each kind observed, by case: {case: {kind: value}}.
OBSERVED: dict[str, dict[str, object]] = {}


def observe(kind: str, case: str, value: object) -> None:
    OBSERVED.setdefault(case, {})[kind] = value


# One template for both kinds; user_endpoint_config picks the variant. Rendered values of
# strings are JSON-quoted (ENDPOINT.md §3.4), which YAML and the shell both accept here.
TEMPLATE = """\
heartbeat_period: 5
idle_heartbeats_soft: {{ idle_soft|default(0) }}
idle_heartbeats_hard: {{ idle_hard|default(5760) }}
{% if allowed_fn is defined %}allowed_functions:
  - {{ allowed_fn }}
{% endif %}{% if my_option is defined %}endpoint_setup: printf %s {{ my_option }} > "$GLOBUS_COMPUTE_ENDPOINT_DIR/my_option.txt"
{% endif %}engine:
  type: {{ engine|default("ThreadPoolEngine") }}
  max_workers: 2
{% if restrict_serializers is defined %}  allowed_serializers: [globus_compute_sdk.serialize.DillCodeSource, globus_compute_sdk.serialize.JSONData]
{% endif %}"""

# Functions are defined in a namespace named "__main__", so dill ships them by value, as it
# does for a user's script (the endpoint cannot import this test module).
_FUNCS: dict = {"__name__": "__main__"}
exec(
    """
import os as _os


def plain():
    return "hello from a plain function"


def echo(*args, **kwargs):
    return args, kwargs


def make_adder(n):
    def add(x):
        return x + n
    return add


def nested(x):
    def square(y):
        return y * y
    def twice(y):
        return 2 * y
    return twice(square(x))


triple = lambda x: 3 * x


def stdlib_only(text):
    import datetime
    import fractions
    import hashlib
    import json
    import re
    return {
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "json": json.dumps({"t": text, "n": [1, 2]}, sort_keys=True),
        "words": re.findall(r"[a-z]+", text),
        "date": datetime.date(2024, 2, 29).isoformat(),
        "delta": str(datetime.timedelta(hours=25, seconds=7)),
        "fraction": str(fractions.Fraction(3, 4) + fractions.Fraction(1, 6)),
    }


def size_of(blob):
    return len(blob)


def blob_of(n):
    return b"r" * n


def fail_deep(x):
    def inner(y):
        raise ValueError(f"bad value {y}")
    return inner(x)


def read_option():
    path = _os.path.join(_os.environ["GLOBUS_COMPUTE_ENDPOINT_DIR"], "my_option.txt")
    with open(path) as f:
        return f.read()


def endpoint_dir():
    return _os.environ["GLOBUS_COMPUTE_ENDPOINT_DIR"]


def die():
    import os
    import signal
    os.kill(os.getpid(), signal.SIGKILL)


def allowed():
    return "allowed"


def refused():
    return "should never run"
""",
    _FUNCS,
)
F = type("F", (), {k: staticmethod(v) for k, v in _FUNCS.items() if callable(v) and not k.startswith("_")})

MB5 = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def service(port_5000):
    """gc-service (SQLite, fresh vhost) and one client; the SDK in this process uses it."""
    workdir = Path(tempfile.mkdtemp(prefix="gcrs-conformance-"))
    vhost = svc.Vhost()
    db = svc.Database("sqlite", workdir)
    service = svc.Service(db, vhost, workdir)
    saved = dict(os.environ)
    try:
        service.start()
        client = service.create_client("conformance")
        os.environ.update(svc._sdk_env(client, workdir / "sdk"))
        from globus_compute_sdk import Executor

        Executor._default_task_group_id = None
        yield service, client, workdir
    finally:
        # The SDK keeps result watchers alive beyond their Executors; stop them before the
        # service and the vhost go, or they reconnect to whatever answers on port 5000 next.
        from globus_compute_sdk.sdk import executor as sdk_executor

        for watcher in list(sdk_executor._RESULT_WATCHERS.values()):
            watcher.shutdown(wait=False, cancel_futures=True)
            watcher.join(timeout=10)
        service.stop()
        os.environ.clear()
        os.environ.update(saved)
        db.drop()
        vhost.delete()
        shutil.rmtree(workdir, ignore_errors=True)


class Endpoint:
    """One started MEP of a kind, and helpers to submit through the SDK."""

    def __init__(self, kind: str, ep):
        self.kind = kind
        self.ep = ep
        self.endpoint_id = ep.endpoint_id

    def executor(self, **config):
        from globus_compute_sdk import Executor

        return Executor(endpoint_id=self.endpoint_id, user_endpoint_config=config or None)

    def run(self, fn, *args, config: dict | None = None, timeout: float = 120, **kwargs):
        with self.executor(**(config or {})) as ex:
            return ex.submit(fn, *args, **kwargs).result(timeout=timeout)

    def failure(self, fn, *args, config: dict | None = None, timeout: float = 120):
        from globus_compute_sdk.errors import TaskExecutionFailed

        with self.executor(**(config or {})) as ex:
            fut = ex.submit(fn, *args)
            with pytest.raises(TaskExecutionFailed) as info:
                fut.result(timeout=timeout)
        return info.value


@pytest.fixture(scope="module", params=KINDS)
def endpoint(request, service):
    kind = request.param
    _, client, workdir = service
    cls = svc.UpstreamEndpoint if kind == "upstream" else svc.OurEndpoint
    ep = cls(client)
    (ep.ep_dir / "user_config_template.yaml.j2").write_text(TEMPLATE)
    if ep.user:
        subprocess.run(["chown", "-R", ep.user, str(ep.home)], check=True)
    failed_before = request.session.testsfailed
    try:
        ep.start(timeout=60)
        yield Endpoint(kind, ep)
    finally:
        keep = None
        if request.session.testsfailed > failed_before:
            keep = Path(tempfile.mkdtemp(prefix=f"gcrs-conformance-{kind}-logs-"))
            shutil.copy(workdir / "service.log", keep)
            print(f"\nconformance logs of {kind} kept in {keep}", file=sys.stderr)
        ep.cleanup(keep_logs_in=keep)


# -------------------------------------------------------------------------------------------
# 1-3: values in, values out
# -------------------------------------------------------------------------------------------


def test_plain_function(endpoint):
    value = endpoint.run(F.plain)
    assert value == "hello from a plain function"
    observe(endpoint.kind, "plain", value)


def test_positional_and_keyword_arguments(endpoint):
    args = (1, "two", None, b"\x00\xffbytes", (3, (4, 5)), [6, {"seven": 7}], {"k": [None]})
    kwargs = {"d": {"a": (1, 2), "b": None}, "l": [b"x", 2.5], "n": None, "t": (), "b": b""}
    got_args, got_kwargs = endpoint.run(F.echo, *args, **kwargs)
    assert got_args == args
    assert got_kwargs == kwargs
    observe(endpoint.kind, "args", (got_args, got_kwargs))


def test_closure_nested_lambda_and_stdlib(endpoint):
    with endpoint.executor() as ex:
        futures = {
            "closure": ex.submit(F.make_adder(5), 10),
            "nested": ex.submit(F.nested, 3),
            "lambda": ex.submit(F.triple, 14),
            "stdlib": ex.submit(F.stdlib_only, "abc def"),
        }
        got = {k: f.result(timeout=120) for k, f in futures.items()}
    assert got["closure"] == 15
    assert got["nested"] == 18
    assert got["lambda"] == 42
    assert got["stdlib"] == {
        "sha256": hashlib.sha256(b"abc def").hexdigest(),
        "json": '{"n": [1, 2], "t": "abc def"}',
        "words": ["abc", "def"],
        "date": "2024-02-29",
        "delta": "1 day, 1:00:07",
        "fraction": "11/12",
    }
    observe(endpoint.kind, "functions", got)


# -------------------------------------------------------------------------------------------
# 4: sizes
# -------------------------------------------------------------------------------------------


def test_five_megabyte_argument_and_result(endpoint):
    with endpoint.executor() as ex:
        size = ex.submit(F.size_of, b"a" * MB5)
        blob = ex.submit(F.blob_of, MB5)
        assert size.result(timeout=180) == MB5
        assert blob.result(timeout=180) == b"r" * MB5
    observe(endpoint.kind, "5MB", "ok")


def test_result_over_ten_mebibytes_is_refused(endpoint):
    n = 8 * 1024 * 1024  # dill + base64: about 11.2 million characters
    exc = endpoint.failure(F.blob_of, n)
    data = exc.remote_data
    m = re.fullmatch(r"MaxResultSizeExceeded\((\d+), 10485760\)", data)
    assert m, data
    assert int(m.group(1)) > 10 * 1024 * 1024
    observe(endpoint.kind, "too-big", data)


# -------------------------------------------------------------------------------------------
# 5: exceptions
# -------------------------------------------------------------------------------------------


def _traceback_shape(text: str) -> list[str]:
    """The frames (file, function) and the final line of a traceback text."""
    frames = re.findall(r'^\s*File "([^"]+)", line \d+, in (\S+)$', text, re.M)
    last = text.rstrip("\n").splitlines()[-1]
    return [f"{f}:{fn}" for f, fn in frames] + [last]


def test_exception_propagates_with_the_remote_traceback(endpoint):
    exc = endpoint.failure(F.fail_deep, 3)
    text = exc.remote_data
    assert text.startswith("Traceback (most recent call last):\n"), text
    assert text.rstrip("\n").endswith("ValueError: bad value 3"), text
    assert re.search(r", in inner\n", text), text
    assert "ValueError: bad value 3" in str(exc)
    observe(endpoint.kind, "traceback", _traceback_shape(text))


# -------------------------------------------------------------------------------------------
# 6: user_endpoint_config reaches the template
# -------------------------------------------------------------------------------------------


def test_user_endpoint_config_reaches_the_template(endpoint):
    # The template turns `my_option` into an `endpoint_setup` command that writes it into
    # the user endpoint's directory; the function reads it back from there.
    value = endpoint.run(F.read_option, config={"my_option": "gcrs-opt-42"})
    assert value == "gcrs-opt-42"
    observe(endpoint.kind, "template", value)


# -------------------------------------------------------------------------------------------
# 7: allowed_functions
# -------------------------------------------------------------------------------------------


def test_function_outside_allowed_functions_is_refused(endpoint):
    from globus_compute_sdk import Client

    c = Client()
    ok_id = c.register_function(F.allowed)
    bad_id = c.register_function(F.refused)
    config = {"allowed_fn": ok_id}
    from globus_compute_sdk.errors import TaskExecutionFailed

    with endpoint.executor(**config) as ex:
        assert ex.submit_to_registered_function(ok_id).result(timeout=120) == "allowed"
        fut = ex.submit_to_registered_function(bad_id)
        with pytest.raises(TaskExecutionFailed) as info:
            fut.result(timeout=120)
    text = info.value.remote_data
    m = re.fullmatch(rf"Function {bad_id} not permitted on endpoint ([0-9a-f-]{{36}})", text)
    assert m, text
    # The id is the user endpoint's (internal) id, not the one the SDK submitted to.
    assert m.group(1) != endpoint.endpoint_id
    normalised = text.replace(m.group(1), "<uep>").replace(bad_id, "<function>")
    observe(endpoint.kind, "not-allowed", normalised)


def test_serializer_outside_allowed_serializers_is_refused(endpoint):
    # The engine allows only DillCodeSource for code; the SDK's default is DillCode.
    exc = endpoint.failure(F.plain, config={"restrict_serializers": True})
    text = exc.remote_data
    assert "DeserializationError" in text, text
    assert "Code serializer DillCode disabled by current configuration" in text, text
    assert "Allowed serializers: DillCodeSource" in text, text
    observe(endpoint.kind, "serializer", _traceback_shape(text)[-1])


# -------------------------------------------------------------------------------------------
# 8: a worker killed mid-task
# -------------------------------------------------------------------------------------------


def test_killed_worker_fails_the_task_and_the_endpoint_goes_on(endpoint):
    from globus_compute_sdk.errors import TaskExecutionFailed

    config = {"engine": "ProcessPoolEngine"}
    with endpoint.executor(**config) as ex:
        fut = ex.submit(F.die)
        with pytest.raises(TaskExecutionFailed) as info:
            fut.result(timeout=120)
        text = info.value.remote_data
        # Both report an engine-level failure: a block of 68 "+", the reason, 68 "-".
        assert text.startswith("+" * 68 + "\n"), text
        assert text.endswith("-" * 68), text
        if endpoint.kind == "upstream":
            # Python's ProcessPoolExecutor is broken for good once a worker dies.
            assert "BrokenProcessPool" in text, text
        else:
            assert re.search(r"worker process \d+ was killed by signal 9 \(SIGKILL\)", text), text
        observe(endpoint.kind, "killed", "engine-level failure")

        nxt = ex.submit(F.plain)
        if endpoint.kind == "upstream":
            # DIFFERENCE (on purpose): upstream's user endpoint keeps submitting to the
            # broken pool, so every later task fails with the same engine-level
            # BrokenProcessPool error until the user endpoint is restarted. Ours replaces
            # the worker and runs the task.
            with pytest.raises(TaskExecutionFailed) as info:
                nxt.result(timeout=120)
            later = info.value.remote_data
            assert later.startswith("+" * 68 + "\n"), later
            assert "BrokenProcessPool: A child process terminated abruptly" in later, later
        else:
            assert nxt.result(timeout=120) == "hello from a plain function"


# -------------------------------------------------------------------------------------------
# 9: idle shutdown, and a fresh user endpoint afterwards
# -------------------------------------------------------------------------------------------


def _uep_pid(uep_dir: str) -> int:
    return int((Path(uep_dir) / "daemon.pid").read_text().strip())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (not yet reaped by the MEP) has finished too.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def test_idle_user_endpoint_exits_and_a_fresh_one_runs_the_next_task(endpoint):
    # heartbeat_period has a minimum of 5 s upstream; soft 1 = shut down at the first
    # heartbeat without movement once all results are out (hard = max(soft + 1, 2)).
    config = {"idle_soft": 1, "idle_hard": 2}
    uep_dir = endpoint.run(F.endpoint_dir, config=config)
    first = _uep_pid(uep_dir)
    assert _alive(first)
    svc.wait_for(lambda: not _alive(first), 60, f"user endpoint {first} to exit when idle")
    uep_dir_again = endpoint.run(F.endpoint_dir, config=config)
    assert uep_dir_again == uep_dir  # same configuration, same user endpoint directory
    second = _uep_pid(uep_dir)
    assert second != first
    observe(endpoint.kind, "idle", "restarted")


# -------------------------------------------------------------------------------------------
# 10: die with parent (last for each kind: it kills the core endpoint)
# -------------------------------------------------------------------------------------------


def test_user_endpoint_exits_when_its_core_endpoint_dies(endpoint):
    uep_dir = endpoint.run(F.endpoint_dir)
    uep = _uep_pid(uep_dir)
    mep = int((endpoint.ep.ep_dir / "daemon.pid").read_text().strip())
    assert _alive(uep) and _alive(mep)
    os.kill(mep, signal.SIGKILL)
    svc.wait_for(lambda: not _alive(uep), 30, f"user endpoint {uep} to exit after its parent")
    observe(endpoint.kind, "parent-gone", "exited")


# -------------------------------------------------------------------------------------------
# Both kinds, compared
# -------------------------------------------------------------------------------------------


def test_both_kinds_observed_the_same():
    both = {case: v for case, v in OBSERVED.items() if len(v) == len(KINDS)}
    if not both:
        pytest.skip("no case ran for both kinds")
    differ = {case: v for case, v in both.items() if v["upstream"] != v["ours"]}
    assert not differ, differ
