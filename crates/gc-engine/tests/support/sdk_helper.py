"""Test helper for gc-engine: payloads and result decoding with the unmodified SDK.

    python sdk_helper.py payloads   -> JSON {case: task_buffer} on stdout
    python sdk_helper.py decode     <- JSON {"data": str, "error": bool} on stdin
                                    -> JSON {"value": <summary>} or {"raised": str(exc)}

Functions defined here live in ``__main__`` and are therefore serialized by value, as the
SDK does for functions in a user's script.
"""

import json
import sys

from globus_compute_sdk.errors import TaskExecutionFailed
from globus_compute_sdk.serialize import ComputeSerializer

MIB = 1024 * 1024
SERDE = ComputeSerializer()


def add(a, b=0):
    return a + b


def outer(x):
    def inner(y):
        raise ValueError(f"bad value {y}")

    return inner(x)


def length(s):
    return len(s)


def big(n):
    return "x" * n


# Functions import what they use: a worker's ``__main__`` is empty, as the SDK documents.
def getpid():
    import os

    return os.getpid()


def init_mark():
    import os

    return os.environ.get("GCRS_INIT_MARK")


def main_namespace():
    import __main__

    return sorted(k for k in vars(__main__) if not k.startswith("__"))


def mark_then_sleep(seconds):
    import os
    import time

    # The working directory is the engine's working_dir: the test watches for this file.
    with open("started", "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
    return "slept"


def die():
    import os

    os.kill(os.getpid(), 9)


def cwd_and_env():
    import os

    return [os.getcwd(), os.environ.get("GC_TASK_UUID"), os.environ.get("GC_TASK_SANDBOX_DIR")]


def chatty():
    import os

    print("a line on stdout that must not reach the frame channel", flush=True)
    os.write(1, b"\x00\x00\x00\x05hello")
    return "quiet"


def make_closure(k):
    def scaled(v):
        return v * k

    return scaled


def payload(fn, *args, **kwargs):
    fn_code = SERDE.pack_buffers([SERDE.serialize(fn)])
    return fn_code + SERDE.pack_buffers([SERDE.serialize(args), SERDE.serialize(kwargs)])


def payloads():
    return {
        "add": payload(add, 1, 2),
        "kwargs": payload(add, 1, b=41),
        "closure": payload(make_closure(3), 5),
        "raises": payload(outer, 7),
        "big_arg": payload(length, "y" * (5 * MIB)),
        "big_result": payload(big, 5 * MIB),
        "too_big": payload(big, 11 * MIB),
        "getpid": payload(getpid),
        "main_namespace": payload(main_namespace),
        "init_mark": payload(init_mark),
        "sleep": payload(mark_then_sleep, 600),
        "die": payload(die),
        "cwd_and_env": payload(cwd_and_env),
        "chatty": payload(chatty),
        "not_three_buffers": SERDE.pack_buffers([SERDE.serialize(add)]),
    }


def summary(value):
    if isinstance(value, str) and len(value) > 100:
        return f"str of {len(value)} chars, all {value[0]!r}" if len(set(value)) == 1 else "str"
    return value


def decode():
    req = json.load(sys.stdin)
    if req["error"]:
        return {"raised": str(TaskExecutionFailed(req["data"]))}
    return {"value": summary(SERDE.deserialize(req["data"]))}


if __name__ == "__main__":
    out = payloads() if sys.argv[1] == "payloads" else decode()
    json.dump(out, sys.stdout)
