"""Fixtures for the worker tests: the worker package on ``sys.path`` and a way to build
task payloads exactly as the SDK does."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
WORKER_ROOT = REPO / "python" / "globus_compute_rs_worker"
if str(WORKER_ROOT) not in sys.path:
    sys.path.insert(0, str(WORKER_ROOT))
