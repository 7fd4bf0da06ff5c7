"""Re-pack messages with globus-compute-common (the reference implementation).

Mode "repack": read hex-encoded messages, one per line, from stdin; for each print the hex of
pack(unpack(message)), or "ERR <reason>" if the reference rejects it.
Mode "generate": print hex-encoded messages packed by the reference, one per line.
"""

import sys
import uuid

from globus_compute_common.messagepack import pack, unpack
from globus_compute_common.messagepack.message_types import (
    Container,
    ContainerImage,
    EPStatusReport,
    ManagerStatusReport,
    Result,
    ResultErrorDetails,
    Task,
    TaskCancel,
    TaskTransition,
)
from globus_compute_common.tasks.constants import ActorName, TaskState


def repack() -> None:
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            print(pack(unpack(bytes.fromhex(line))).hex())
        except Exception as e:  # report, let the Rust side decide
            print("ERR", type(e).__name__, str(e).replace("\n", " | "))


def generate() -> None:
    u = uuid.UUID("3f2c1a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b")
    tt = [
        TaskTransition(timestamp=1795369570604235047, state=s, actor=a)
        for s, a in zip(TaskState, list(ActorName) * 3)
    ]
    floats = [0.0, -0.0, 0.1, 1e-7, 1e-5, 1e-4, 1.5, 5.0, 1e15, 1e16, 1e21, 1e300,
              2.5e-300, 5e-324, 1.7976931348623157e308, 0.30000000000000004,
              1795369549.600955, 23.0, 123456789.123]
    weird = "\x00\x01\x1f\x7f\"\\/\n\r\t\b\f \u00e9\u2028\u2029\ud7ff\ue000\U0001f600"
    image = ContainerImage(image_type="docker", location="python:3.11", created_at=-1,
                           modified_at=2**62, build_status=None, build_stderr=weird)
    messages = [
        Task(task_id=u, task_buffer="4\n01\nx\n"),
        Task(task_id=u, container_id=u, container=Container(container_id=u, name=weird,
             images=[image, image]), task_buffer=weird * 3),
        Result(task_id=u, data="00\ngARLKi4=\n", details={"os": "Linux", "n": 1,
               "nested": {"a": [1, 2.5, None, True, False, "s"], "b": {}}},
               task_statuses=tt[:2]),
        Result(task_id=u, data=weird, error_details=ResultErrorDetails(
               code="RemoteExecutionError", user_message=weird)),
        Result(task_id=u, data="", details={}, task_statuses=[]),
        EPStatusReport(endpoint_id=u, global_state={"heartbeat_period": 5.0},
                       task_statuses={}),
        EPStatusReport(endpoint_id=u, global_state={f"f{i}": f for i, f in enumerate(floats)},
                       task_statuses={str(u): tt, "z": [], "a": tt[:1]}),
        EPStatusReport(endpoint_id=u, global_state={"ints": [0, -1, 2**63 - 1, -2**63,
                       2**64 - 1], "k" * 3: weird, weird: {"deep": [[[{}]]]}},
                       task_statuses={}),
        TaskCancel(task_id=u),
        ManagerStatusReport(task_statuses={"b": tt, "a": []}),
        image,
        Container(container_id=u, name="", images=[]),
    ] + tt
    for m in messages:
        print(pack(m).hex())


if __name__ == "__main__":
    {"repack": repack, "generate": generate}[sys.argv[1]]()
