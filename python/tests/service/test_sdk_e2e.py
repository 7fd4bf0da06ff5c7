"""The unmodified SDK against gc-service, with the unmodified upstream endpoint 4.19.0
executing the tasks; every test runs once on SQLite and once on PostgreSQL."""

import signal
import time

import pytest
from .conftest import wait_for
from globus_compute_sdk import Client, Executor
from globus_compute_sdk.errors import TaskExecutionFailed, TaskPending

pytestmark = pytest.mark.timeout(300)


# The functions live in a namespace of their own named "__main__", so dill ships their code
# by value (as for a user's script) instead of a reference to this test module, which the
# endpoint's workers cannot import.
_FUNCS = {"__name__": "__main__"}
exec(
    """
def double(x):
    return 2 * x

def boom(x):
    raise ValueError(f"bad value {x}")

def slow_identity(x):
    import time
    time.sleep(0.02)
    return x
""",
    _FUNCS,
)
double = _FUNCS["double"]
boom = _FUNCS["boom"]
slow_identity = _FUNCS["slow_identity"]


def test_executor_returns_results(site):
    with Executor(endpoint_id=site.endpoint_id) as ex:
        assert ex.submit(double, 21).result(timeout=120) == 42
        assert ex.submit(double, "ab").result(timeout=60) == "abab"


def test_exception_in_function_reaches_the_sdk(site):
    with Executor(endpoint_id=site.endpoint_id) as ex:
        fut = ex.submit(boom, 3)
        with pytest.raises(TaskExecutionFailed) as info:
            fut.result(timeout=120)
    assert "ValueError: bad value 3" in str(info.value)


def test_batch_of_1000_tasks_completes(site):
    with Executor(endpoint_id=site.endpoint_id) as ex:
        futures = [ex.submit(double, i) for i in range(1000)]
        results = [f.result(timeout=240) for f in futures]
    assert results == [2 * i for i in range(1000)]


def _final(client: Client, task_id: str) -> dict:
    return wait_for(
        lambda: (t := client.get_task(task_id)) and not t["pending"] and t,
        120,
        f"task {task_id} to finish",
        interval=0.3,
    )


def test_client_calls(site):
    c = Client()
    fid = c.register_function(double)
    assert c.get_function(fid)["function_name"] == "double"

    tid = c.run(5, endpoint_id=site.endpoint_id, function_id=fid)
    first = c.get_task(tid)
    assert first["status"] in ("waiting-for-ep", "success")
    assert _final(c, tid)["status"] == "success"
    assert c.get_result(tid) == 10

    batch = c.create_batch()
    for i in range(5):
        batch.add(fid, args=(i,))
    submitted = c.batch_run(site.endpoint_id, batch)
    ids = submitted["tasks"][fid]
    assert len(ids) == 5
    done = wait_for(
        lambda: (r := c.get_batch_result(ids)) and all(not v["pending"] for v in r.values()) and r,
        120,
        "the batch to finish",
        interval=0.3,
    )
    assert [done[i]["result"] for i in ids] == [0, 2, 4, 6, 8]

    bad = c.run(7, endpoint_id=site.endpoint_id, function_id=c.register_function(boom))

    def failure():
        try:
            c.get_result(bad)
        except TaskPending:
            return None
        except TaskExecutionFailed as e:
            return e
        raise AssertionError("the failing task succeeded")

    assert "bad value 7" in str(wait_for(failure, 120, "the failing task", interval=0.3))

    status = c.get_endpoint_status(site.endpoint_id)
    assert status["status"] == "online"


def test_service_restart_mid_batch_loses_no_result(site):
    n = 400
    with Executor(endpoint_id=site.endpoint_id) as ex:
        futures = [ex.submit(slow_identity, i) for i in range(n)]
        # Every task accepted by the service (task ids assigned) before the crash.
        wait_for(lambda: all(f.task_id for f in futures), 120, "all tasks to be submitted")
        site.service.stop(signal.SIGKILL)
        time.sleep(2)  # results pile up in the broker meanwhile
        site.service.start()
        results = [f.result(timeout=240) for f in futures]
    assert results == list(range(n))
    # ... and every one is also persisted for polling clients.
    c = Client()
    ids = [f.task_id for f in futures]
    got = c.get_batch_result(ids)
    assert all(got[i]["status"] == "success" for i in ids)


def test_tasks_for_an_offline_endpoint_run_when_it_returns(site):
    c = Client()
    fid = c.register_function(double)
    site.endpoint.stop()  # the endpoint says goodbye with heartbeat_period 0
    wait_for(
        lambda: c.get_endpoint_status(site.endpoint_id)["status"] == "offline",
        30,
        "the endpoint to be offline",
    )
    started = time.monotonic()
    tid = c.run(4, endpoint_id=site.endpoint_id, function_id=fid)
    assert time.monotonic() - started < 20, "submit to an offline endpoint must not wait for it"
    assert c.get_task(tid)["pending"]
    site.endpoint.start()
    assert wait_for(
        lambda: (t := c.get_task(tid)) and not t["pending"] and t, 120, "the queued task"
    )["result"] == 8
    # The returning endpoint's first heartbeat re-sent the start command of the waiting user
    # endpoint (the one sent at submit time expires after 170 s on the broker).
    assert "restarting user endpoint with waiting tasks" in site.service.log.read_text()
