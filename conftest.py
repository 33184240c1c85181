"""Root pytest configuration.

- `pytest` is the fast test command: unless the user chose a mode, it sets `CURRICLAB_QUICK=1`, so
  every notebook runs its quick experiments (`CURRICLAB_QUICK=0 pytest notebooks` runs them at full
  scale). Notebook kernels inherit the environment, and `curriclab.core.config.pick` reads it.
- With pytest-xdist's two workers each running a notebook kernel, torch's default of one thread per
  core would oversubscribe the CPU; one thread per worker (and per kernel) uses the cores without
  contention. A value the user set is kept.
"""

import os

os.environ.setdefault("CURRICLAB_QUICK", "1")

if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
