"""``python -m globus_compute_rs_worker``: serve tasks over this process's stdin/stdout.

Nothing is bound in this module's namespace: it is ``__main__``, where functions that the
SDK serialized by value look up their globals, so user code sees an empty ``__main__``.
"""

if __name__ == "__main__":
    raise SystemExit(__import__("globus_compute_rs_worker.worker", fromlist=["main"]).main())
