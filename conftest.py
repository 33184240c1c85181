"""Root pytest configuration.

With pytest-xdist's two workers each running a notebook kernel, torch's default of one thread per
core would oversubscribe the CPU; one thread per worker (and per kernel, which inherits the
environment) uses the cores without contention. A value the user set is kept.
"""

import os

if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
