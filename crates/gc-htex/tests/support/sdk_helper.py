"""Test helper for gc-htex: task payloads and result decoding with the unmodified SDK.

    python sdk_helper.py payloads   -> JSON {case: task_buffer} on stdout
    python sdk_helper.py decode     <- JSON {"data": str, "error": bool} on stdin
                                    -> JSON {"value": ...} or {"raised": str(exc)}
"""

import json
import sys

from globus_compute_sdk.errors import TaskExecutionFailed
from globus_compute_sdk.serialize import ComputeSerializer

SERDE = ComputeSerializer()


def add(a, b):
    return a + b


def whoami():
    import os

    return [os.getpid(), os.getcwd()]


def nap(seconds):
    import time

    time.sleep(seconds)
    return "rested"


def hang_first_time(seconds):
    """First call (per working directory): mark, then hang; later calls: return at once."""
    import os
    import time

    if not os.path.exists("attempted"):
        with open("attempted", "w") as f:
            f.write(str(os.getpid()))
        time.sleep(seconds)
        return "first attempt finished"
    return "second attempt"


def container_mark():
    import os

    return os.environ.get("GCRS_IN_CONTAINER")


def placement(seconds):
    """Where this task ran: CPUs, accelerator, OpenMP threads, directory, sandbox, task id."""
    import os
    import time

    time.sleep(seconds)
    return [
        sorted(os.sched_getaffinity(0)),
        os.environ.get("CUDA_VISIBLE_DEVICES"),
        os.environ.get("OMP_NUM_THREADS"),
        os.getcwd(),
        os.environ.get("GC_TASK_SANDBOX_DIR"),
        os.environ.get("GC_TASK_UUID"),
    ]


def payload(fn, *args):
    fn_code = SERDE.pack_buffers([SERDE.serialize(fn)])
    return fn_code + SERDE.pack_buffers([SERDE.serialize(args), SERDE.serialize({})])


def payloads():
    return {
        "add": payload(add, 1, 2),
        "whoami": payload(whoami),
        "nap": payload(nap, 2),
        "hang": payload(nap, 30),
        "hang_first_time": payload(hang_first_time, 30),
        "container_mark": payload(container_mark),
        "placement": payload(placement, 0.5),
    }


def decode():
    req = json.load(sys.stdin)
    if req["error"]:
        return {"raised": str(TaskExecutionFailed(req["data"]))}
    return {"value": SERDE.deserialize(req["data"])}


if __name__ == "__main__":
    out = payloads() if sys.argv[1] == "payloads" else decode()
    json.dump(out, sys.stdout)
