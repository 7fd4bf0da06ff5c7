"""Task worker of the Rust Globus Compute endpoint.

One long-lived process runs the tasks a ``gc-engine`` pool hands it, one at a time, and
answers with what the endpoint puts into the ``Result`` message.  The whole implementation,
including the description of the frame protocol, lives in :mod:`.worker`; it is a single
file on purpose, so the Rust engine can also run a copy embedded in its binary (a small
``python -c`` bootstrap receives it on stdin), without anything installed besides
``globus-compute-sdk``.

Run it with ``python -m globus_compute_rs_worker``: either ``pip install -e
python/globus_compute_rs_worker`` or put ``python/globus_compute_rs_worker`` on
``PYTHONPATH``.
"""

from globus_compute_rs_worker.worker import PROTOCOL_VERSION, TaskRunner, main

__all__ = ("PROTOCOL_VERSION", "TaskRunner", "main")
