"""``python -m globus_compute_rs_worker``: serve tasks over this process's stdin/stdout."""

import sys

from globus_compute_rs_worker.worker import main

sys.exit(main())
