"""Run Globus Compute tasks for a parent process over length-prefixed frames.

The parent (the Rust ``gc-engine`` crate) starts this module as a long-lived process and
sends it tasks one at a time; for each it answers with the text the endpoint puts into the
``Result`` message's ``data`` and, on failure, the ``error_details`` code and user message
(ENDPOINT.md §6.7, PROTOCOL-ENDPOINT.md §7.3-7.4).  The messagepack ``Task``/``Result``
envelopes are the parent's business; this process sees only ``task_buffer`` and produces only
the pieces of a result that need Python.

Channel
-------
At start-up the process moves its channel off the standard descriptors: it duplicates stdin
and stdout to private (non-inheritable) descriptors, points fd 0 at ``/dev/null`` and fd 1 at
fd 2.  Whatever user code prints therefore goes to stderr and can never corrupt a frame, and
children that user code spawns do not inherit the channel.

Frames (both directions)::

    u32 big-endian N | N bytes of body
    body = u32 big-endian H | H bytes of UTF-8 JSON object ("header") | N - 4 - H bytes "blob"

Parent to worker:

* ``init`` -- first frame, exactly once.  Header ``{"type": "init", "protocol": 1,
  "run_dir": <absolute path>, "run_in_sandbox": <bool>, "allowed_deserializers": [<import
  path or wildcard>, ...] (empty: all allowed), "result_size_limit": <int >= 128>}``, empty
  blob.
* ``task`` -- header ``{"type": "task", "task_id": <str>, "result_serializers": [<import
  path>, ...]}``, blob = the task's ``task_buffer`` encoded as UTF-8.  An optional
  ``"environment": {<name>: <value>, ...}`` is set in ``os.environ`` for that task only (the
  previous values are restored afterwards); GlobusMPIEngine passes its ``PARSL_*`` variables
  this way.  An optional ``"user_runtime": {...}`` is the submitter's runtime as the SDK
  reports it (PROTOCOL-SDK §5.4): the worker compares it with its own before deserializing
  anything (see :func:`compare_runtimes`).
* End of file on the channel: the worker exits with status 0.

Worker to parent:

* ``ready`` -- answer to ``init``: ``{"type": "ready", "protocol": 1, "pid": <int>,
  "details": {"os", "dill_version", "python_version", "globus_compute_sdk_version"}}``.
* ``fatal`` -- ``init`` rejected (e.g. an invalid deserializer allow-list):
  ``{"type": "fatal", "message": <str>}``; the worker then exits with status 3.
* ``result`` -- answer to each ``task``: ``{"type": "result", "task_id": <str>,
  "outcome": "success" | "failure" | "system_failure", "code": <str or null>,
  "user_message": <str or null>, "exec_start": <ns>, "exec_end": <ns>}`` and, when the
  submitter's runtime differs from the worker's in a way that may still work, ``"warning":
  <str>`` (the parent logs it); blob = UTF-8 text:
  the serialized return value (``success``), the error text of the ``Result`` (``failure``,
  with ``code``/``user_message`` as upstream's ``error_details``), or the traceback of an
  error in preparing the task's directory (``system_failure``, which upstream reports as an
  engine-level failure).

A malformed frame from the parent is a bug in the parent: the worker says so on stderr and
exits with status 2.

Functions are cached by the SHA-256 of their serialized form (least recently used first out),
so a function submitted many times is deserialized once per worker.  The consequence, shared
with any long-lived worker: module-level state a function changes persists between its calls
on the same worker.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import struct
import sys
import threading
import time
import traceback
import typing as t

PROTOCOL_VERSION = 1
DEFAULT_RESULT_SIZE_LIMIT = 10 * 1024 * 1024
FUNCTION_CACHE_SIZE = 128

EXIT_PROTOCOL_ERROR = 2
EXIT_INIT_REJECTED = 3

_LEN = struct.Struct(">I")


class ProtocolError(Exception):
    """The parent sent something this worker does not understand."""


# ---------------------------------------------------------------------------------------
# Framing
# ---------------------------------------------------------------------------------------


def _read_exact(fd: int, n: int) -> bytes | None:
    """Read exactly ``n`` bytes; ``None`` on end of file before the first byte."""
    chunks = bytearray()
    while len(chunks) < n:
        chunk = os.read(fd, min(n - len(chunks), 1 << 20))
        if not chunk:
            if not chunks:
                return None
            raise ProtocolError(f"channel closed inside a frame ({len(chunks)}/{n} bytes)")
        chunks += chunk
    return bytes(chunks)


def read_frame(fd: int) -> tuple[dict, bytes] | None:
    """Read one frame: ``(header, blob)``, or ``None`` at a clean end of file."""
    head = _read_exact(fd, _LEN.size)
    if head is None:
        return None
    (n,) = _LEN.unpack(head)
    if n < _LEN.size:
        raise ProtocolError(f"frame of {n} bytes is shorter than its header length")
    body = _read_exact(fd, n)
    if body is None:
        raise ProtocolError("channel closed inside a frame")
    (h,) = _LEN.unpack_from(body)
    if _LEN.size + h > n:
        raise ProtocolError(f"header length {h} exceeds frame length {n}")
    try:
        header = json.loads(body[_LEN.size : _LEN.size + h].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(f"frame header is not JSON: {e}") from e
    if not isinstance(header, dict):
        raise ProtocolError("frame header is not a JSON object")
    return header, body[_LEN.size + h :]


def write_frame(fd: int, header: dict, blob: bytes = b"") -> None:
    """Write one frame (header as compact JSON, then ``blob``)."""
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    n = _LEN.size + len(hbytes) + len(blob)
    view = memoryview(b"".join((_LEN.pack(n), _LEN.pack(len(hbytes)), hbytes, blob)))
    while view:
        written = os.write(fd, view)
        view = view[written:]


# ---------------------------------------------------------------------------------------
# Error text, as the endpoint reports it (ENDPOINT.md §6.7 step 10, PROTOCOL-ENDPOINT §7.4)
# ---------------------------------------------------------------------------------------


def _internal_error_classes() -> tuple[type[BaseException], ...]:
    """Errors reported as ``code = class name``, ``data = repr(exc)``.

    ``CouldNotExecuteUserTaskError`` (a body that is not a ``Task``) is detected by the
    parent, before a task reaches a worker, so only the SDK's class matters here.
    """
    from globus_compute_sdk.errors import MaxResultSizeExceeded

    return (MaxResultSizeExceeded,)


def _skip_frames(tb, levels: int):
    """Drop up to ``levels`` outer frames, but never the innermost one."""
    while levels > 0:
        if tb.tb_next is not None:
            tb = tb.tb_next
        levels -= 1
    return tb


def error_text(
    exc: BaseException, internal: tuple[type[BaseException], ...], levels: int
) -> str:
    """The ``data`` of a failed task's ``Result``.

    ``levels`` outer frames are left out of the traceback (never the innermost).  Upstream
    catches the exception in the frame that calls the user function and leaves out two
    frames -- its own and, when the error was raised deeper, the user function's outermost
    one; callers reproduce that by passing their own depth above the user function plus one.
    """
    if isinstance(exc, internal):
        return repr(exc)
    tb = exc.__traceback__
    if tb is not None:
        tb = _skip_frames(tb, levels)
    return "".join(traceback.format_exception(type(exc), exc, tb))


def error_details(exc: BaseException, internal: tuple[type[BaseException], ...]) -> tuple[str, str]:
    """``(code, user_message)`` of a failed task's ``Result.error_details``."""
    if isinstance(exc, internal):
        return type(exc).__name__, f"remote error: {exc}"
    return "RemoteExecutionError", "An error occurred during the execution of this task"


# ---------------------------------------------------------------------------------------
# Submitter runtime versus worker runtime (docs/troubleshooting.md)
# ---------------------------------------------------------------------------------------

RUNTIME_MISMATCH_CODE = "EnvironmentMismatch"
RUNTIME_MISMATCH_MESSAGE = (
    "The submitting Python environment and the endpoint's workers are incompatible"
)


class RuntimeMismatch(Exception):
    """The submitter's runtime cannot work with this worker's."""


def _version_tuple(text: str) -> tuple[int, ...] | None:
    parts = []
    for piece in text.split(".")[:3]:
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts) if len(parts) >= 2 else None


def submitter_python(runtime: t.Mapping) -> str | None:
    """The submitter's Python version (``x.y.z``) from ``user_runtime``."""
    py = runtime.get("python")
    if isinstance(py, dict):
        version = py.get("version")
        if isinstance(version, str) and version:
            return version
        vt = py.get("version_tuple")
        if isinstance(vt, list) and vt and all(isinstance(v, int) for v in vt):
            return ".".join(str(v) for v in vt)
    legacy = runtime.get("python_version")
    if isinstance(legacy, str) and legacy:
        return legacy.split()[0]
    return None


def _describe(python: str | None, sdk: str | None, dill: str | None = None) -> str:
    text = f"Python {python or 'unknown'}, globus-compute-sdk {sdk or 'unknown'}"
    if dill:
        text += f", dill {dill}"
    return text


def _how_to_fix(submitter: str | None, worker: str) -> str:
    return (
        "To fix it, run the workers with the submitter's Python or submit from the workers' "
        "one: in the endpoint's user_config_template.yaml.j2, set the engine's worker_init "
        "to activate a virtual environment with Python "
        f"{'.'.join((submitter or '?').split('.')[:2])} and globus-compute-sdk "
        "(for example `worker_init: source /path/to/venv/bin/activate`), or submit from a "
        f"virtual environment with Python {'.'.join(worker.split('.')[:2])} and the same "
        "globus-compute-sdk and dill versions as the workers."
    )


def compare_runtimes(runtime: t.Mapping, worker: t.Mapping) -> tuple[str | None, str | None]:
    """Compare the submitter's ``user_runtime`` with the worker's details.

    Returns ``(error, warning)``: ``error`` when the two cannot work together (another
    Python major or minor version: serialized code and pickles are not portable across
    them), ``warning`` when they differ in a way that may still work (Python micro version,
    SDK version, Python implementation).  Both ``None`` when nothing differs or the runtime
    says nothing usable.
    """
    sub_py = submitter_python(runtime)
    sub_sdk = runtime.get("globus_compute_sdk_version")
    sub_sdk = sub_sdk if isinstance(sub_sdk, str) else None
    w_py = str(worker.get("python_version") or "")
    w_sdk = str(worker.get("globus_compute_sdk_version") or "")
    w_dill = str(worker.get("dill_version") or "")
    sub_desc = _describe(sub_py, sub_sdk)
    w_desc = _describe(w_py, w_sdk, w_dill)
    sub_v = _version_tuple(sub_py) if sub_py else None
    w_v = _version_tuple(w_py)
    if sub_v and w_v and sub_v[:2] != w_v[:2]:
        return (
            f"{RUNTIME_MISMATCH_CODE}: this task was submitted from {sub_desc}, but the "
            f"endpoint's workers run {w_desc}.  Functions and arguments serialized under one "
            "Python minor version cannot be reliably loaded under another, so the task was "
            "not run.  " + _how_to_fix(sub_py, w_py),
            None,
        )
    differences = []
    if sub_v and w_v and sub_v != w_v:
        differences.append(f"Python {sub_py} vs {w_py}")
    if sub_sdk and w_sdk and sub_sdk != w_sdk:
        differences.append(f"globus-compute-sdk {sub_sdk} vs {w_sdk}")
    py = runtime.get("python")
    impl = py.get("implementation") if isinstance(py, dict) else None
    import platform

    if isinstance(impl, str) and impl and impl != platform.python_implementation():
        differences.append(f"{impl} vs {platform.python_implementation()}")
    if differences:
        return None, (
            f"submitter runtime differs from the worker's ({'; '.join(differences)}); the "
            "task runs, but serialization problems are possible"
        )
    return None, None


# ---------------------------------------------------------------------------------------
# Task timeout (GC_TASK_TIMEOUT, ENDPOINT.md §6.7 step 6)
# ---------------------------------------------------------------------------------------


def _with_timeout(f: t.Callable, seconds: float) -> t.Callable:
    """Wrap ``f`` so that it is interrupted after ``seconds``.

    Uses Parsl's wrapper when Parsl is installed, so the error is the same ``AppTimeout``
    upstream raises; otherwise an equivalent one that raises :class:`TaskTimeout`.
    """
    try:
        from parsl.app.python import timeout
    except ImportError:
        pass
    else:
        return timeout(f, seconds)

    import ctypes
    import functools

    @functools.wraps(f)
    def timed(*args, **kwargs):
        target = threading.get_ident()

        def interrupt():
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(target), ctypes.py_object(TaskTimeout)
            )

        timer = threading.Timer(seconds, interrupt)
        timer.start()
        try:
            return f(*args, **kwargs)
        finally:
            timer.cancel()

    return timed


class TaskTimeout(Exception):
    """The task ran longer than ``GC_TASK_TIMEOUT`` seconds (used when Parsl is absent)."""


def _task_timeout() -> float:
    raw = os.environ.get("GC_TASK_TIMEOUT", "0")
    try:
        return max(0.0, float(raw))
    except ValueError:
        return 0.0


# ---------------------------------------------------------------------------------------
# Running tasks
# ---------------------------------------------------------------------------------------


class Outcome(t.NamedTuple):
    """What one task produced; see the module doc for the fields' meaning."""

    outcome: str
    data: str
    code: str | None
    user_message: str | None
    exec_start: int
    exec_end: int
    warning: str | None = None


class TaskRunner:
    """Deserialize, call and serialize tasks in this process (ENDPOINT.md §6.7)."""

    def __init__(
        self,
        *,
        run_dir: str,
        run_in_sandbox: bool = False,
        allowed_deserializers: t.Sequence[str] = (),
        result_size_limit: int = DEFAULT_RESULT_SIZE_LIMIT,
        cache_size: int = FUNCTION_CACHE_SIZE,
    ):
        from globus_compute_sdk.serialize import ComputeSerializer

        if result_size_limit < 128:
            raise ValueError(
                f"Invalid result limit; must be at least 128 bytes ({result_size_limit=})"
            )
        if not os.path.isabs(run_dir):
            raise ValueError(f"Absolute path required.  Received: {run_dir=}")
        self.run_dir = run_dir
        self.run_in_sandbox = run_in_sandbox
        self.result_size_limit = result_size_limit
        self.serde = ComputeSerializer(allowed_deserializer_types=list(allowed_deserializers) or None)
        self._internal = _internal_error_classes()
        self._functions: collections.OrderedDict[bytes, t.Callable] = collections.OrderedDict()
        self._cache_size = max(0, cache_size)
        self._runtime_checks: dict[str, tuple[str | None, str | None]] = {}
        self._details: dict | None = None
        self._last_failure_was_deserialization = False

    def details(self) -> dict:
        """The worker environment, as upstream reports it in ``Result.details``."""
        if self._details is None:
            from globus_compute_sdk.sdk.utils import get_env_details

            self._details = get_env_details()
        return dict(self._details)

    def run(
        self,
        task_id: str,
        task_buffer: str,
        result_serializers: t.Sequence[str],
        environment: t.Mapping[str, str] | None = None,
        user_runtime: t.Mapping | None = None,
    ) -> Outcome:
        """Run one task with ``environment`` set; never raises for anything the task or its
        payload does.  With the submitter's ``user_runtime``, an incompatible runtime fails
        the task before anything is deserialized, and a different but compatible one runs
        with a warning."""
        warning = None
        if user_runtime:
            error, warning = self.check_runtime(user_runtime)
            if error is not None:
                now = time.time_ns()
                return Outcome(
                    "failure",
                    error,
                    RUNTIME_MISMATCH_CODE,
                    RUNTIME_MISMATCH_MESSAGE,
                    now,
                    now,
                )
        saved = {name: os.environ.get(name) for name in environment or {}}
        os.environ.update(environment or {})
        try:
            out = self._run(task_id, task_buffer, result_serializers)
            if warning is not None:
                out = out._replace(warning=warning)
            if out.outcome == "failure" and user_runtime and warning is not None:
                out = self._explain_failure(out, user_runtime)
            return out
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def check_runtime(self, user_runtime: t.Mapping) -> tuple[str | None, str | None]:
        """:func:`compare_runtimes` against this worker, cached per distinct runtime."""
        key = json.dumps(user_runtime, sort_keys=True, default=str)
        found = self._runtime_checks.get(key)
        if found is None:
            found = compare_runtimes(user_runtime, self.details())
            if len(self._runtime_checks) >= 64:
                self._runtime_checks.clear()
            self._runtime_checks[key] = found
        return found

    def _explain_failure(self, out: Outcome, user_runtime: t.Mapping) -> Outcome:
        """A failure to deserialize under a different runtime: say so, naming both."""
        if not self._last_failure_was_deserialization:
            return out
        details = self.details()
        text = (
            f"{out.data.rstrip()}\n\nThe payload could not be deserialized, and it was "
            f"submitted from {_describe(submitter_python(user_runtime), user_runtime.get('globus_compute_sdk_version'))}"
            f" while the workers run {_describe(details.get('python_version'), details.get('globus_compute_sdk_version'), details.get('dill_version'))}"
            ": a serializer or dill version mismatch is the likely cause.  "
            + _how_to_fix(submitter_python(user_runtime), str(details.get("python_version") or ""))
            + "\n"
        )
        return out._replace(data=text)

    def _run(self, task_id: str, task_buffer: str, result_serializers: t.Sequence[str]) -> Outcome:
        exec_start = time.time_ns()
        try:
            self._prepare_directory(task_id)
        except Exception as e:
            text = "".join(traceback.format_exception(type(e), e, e.__traceback__))
            return Outcome("system_failure", text, None, None, exec_start, time.time_ns())
        self._last_failure_was_deserialization = False
        try:
            data = self._execute(task_buffer, result_serializers)
        except Exception as e:
            code, message = error_details(e, self._internal)
            # Caught two frames above the user function (``_run`` -> ``_execute`` -> f).
            text = error_text(e, self._internal, levels=3)
            return Outcome("failure", text, code, message, exec_start, time.time_ns())
        return Outcome("success", data, None, None, exec_start, time.time_ns())

    def _prepare_directory(self, task_id: str) -> None:
        os.environ.pop("GC_TASK_SANDBOX_DIR", None)
        os.environ["GC_TASK_UUID"] = task_id
        task_dir = os.path.abspath(self.run_dir)
        if self.run_in_sandbox:
            task_dir = os.path.join(task_dir, task_id)
            os.environ["GC_TASK_SANDBOX_DIR"] = task_dir
        os.makedirs(task_dir, exist_ok=True)
        os.chdir(task_dir)

    def _execute(self, task_buffer: str, result_serializers: t.Sequence[str]) -> str:
        # Keep the user function called directly from here: ``run`` depends on the depth.
        self._last_failure_was_deserialization = True
        f, args, kwargs = self._deserialize(task_buffer)
        self._last_failure_was_deserialization = False
        seconds = _task_timeout()
        if seconds > 0.0:
            f = _with_timeout(f, seconds)
        raw_result = f(*args, **kwargs)
        result = self.serde.serialize_from_list(raw_result, result_serializers or ())
        if len(result) > self.result_size_limit:
            from globus_compute_sdk.errors import MaxResultSizeExceeded

            raise MaxResultSizeExceeded(len(result), self.result_size_limit)
        return result

    def _deserialize(self, packed: str) -> list:
        """Split the three buffers (function, args, kwargs) and deserialize them.

        Splitting follows the SDK's ``unpack_and_deserialize`` so malformed payloads fail
        with the same messages; the function comes from the cache when it can.
        """
        buffers = []
        while packed:
            s_length, rest = packed.split("\n", 1)
            length = int(s_length)
            buffers.append(rest[:length])
            packed = rest[length:]
        assert len(buffers) == 3, "Unpack expects 3 buffers, got {}".format(len(buffers))
        fn_text, args_text, kwargs_text = buffers

        key = hashlib.sha256(fn_text.encode("utf-8", "surrogatepass")).digest()
        f = self._functions.get(key)
        if f is None:
            f = self.serde.deserialize(fn_text)
            if self._cache_size:
                self._functions[key] = f
                if len(self._functions) > self._cache_size:
                    self._functions.popitem(last=False)
        else:
            self._functions.move_to_end(key)
        return [f, self.serde.deserialize(args_text), self.serde.deserialize(kwargs_text)]


# ---------------------------------------------------------------------------------------
# The process
# ---------------------------------------------------------------------------------------


def _take_channel() -> tuple[int, int]:
    """Move the channel off fds 0/1 (see the module doc); return ``(in_fd, out_fd)``."""
    in_fd = os.dup(0)
    out_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdout.flush()
    os.dup2(2, 1)
    return in_fd, out_fd


def _str_list(header: dict, key: str) -> list[str]:
    value = header.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProtocolError(f"{key!r} must be a list of strings")
    return value


def _environment(header: dict) -> dict[str, str]:
    value = header.get("environment") or {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and k and "=" not in k and isinstance(v, str) for k, v in value.items()
    ):
        raise ProtocolError("'environment' must map variable names to strings")
    return value


def _user_runtime(header: dict) -> dict | None:
    value = header.get("user_runtime")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError("'user_runtime' must be a JSON object")
    return value


def _init(header: dict) -> TaskRunner:
    if header.get("type") != "init":
        raise ProtocolError(f"expected an init frame, got {header.get('type')!r}")
    if header.get("protocol") != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol {header.get('protocol')!r}")
    run_dir = header.get("run_dir")
    if not isinstance(run_dir, str):
        raise ProtocolError("'run_dir' must be a string")
    limit = header.get("result_size_limit", DEFAULT_RESULT_SIZE_LIMIT)
    if not isinstance(limit, int):
        raise ProtocolError("'result_size_limit' must be an integer")
    return TaskRunner(
        run_dir=run_dir,
        run_in_sandbox=bool(header.get("run_in_sandbox", False)),
        allowed_deserializers=_str_list(header, "allowed_deserializers"),
        result_size_limit=limit,
    )


def serve(in_fd: int, out_fd: int) -> int:
    """Answer frames until end of file; return the process exit status."""
    first = read_frame(in_fd)
    if first is None:
        return 0
    header, _ = first
    try:
        runner = _init(header)
    except ProtocolError:
        raise
    except Exception as e:
        write_frame(out_fd, {"type": "fatal", "message": f"{type(e).__name__}: {e}"})
        return EXIT_INIT_REJECTED
    write_frame(
        out_fd,
        {
            "type": "ready",
            "protocol": PROTOCOL_VERSION,
            "pid": os.getpid(),
            "details": runner.details(),
        },
    )
    while True:
        frame = read_frame(in_fd)
        if frame is None:
            return 0
        header, blob = frame
        if header.get("type") != "task":
            raise ProtocolError(f"expected a task frame, got {header.get('type')!r}")
        task_id = header.get("task_id")
        if not isinstance(task_id, str):
            raise ProtocolError("'task_id' must be a string")
        try:
            task_buffer = blob.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProtocolError(f"task_buffer is not UTF-8: {e}") from e
        out = runner.run(
            task_id,
            task_buffer,
            _str_list(header, "result_serializers"),
            _environment(header),
            _user_runtime(header),
        )
        reply = {
            "type": "result",
            "task_id": task_id,
            "outcome": out.outcome,
            "code": out.code,
            "user_message": out.user_message,
            "exec_start": out.exec_start,
            "exec_end": out.exec_end,
        }
        if out.warning is not None:
            reply["warning"] = out.warning
        write_frame(
            out_fd,
            reply,
            # Lone surrogates (from a user's exception message, say) cannot travel as UTF-8.
            out.data.encode("utf-8", "backslashreplace"),
        )


def main() -> int:
    in_fd, out_fd = _take_channel()
    try:
        return serve(in_fd, out_fd)
    except ProtocolError as e:
        print(f"globus_compute_rs_worker: protocol error: {e}", file=sys.stderr, flush=True)
        return EXIT_PROTOCOL_ERROR
    except BrokenPipeError:
        # The parent went away; nobody is left to answer.
        return 0


if __name__ == "__main__":
    sys.exit(main())
