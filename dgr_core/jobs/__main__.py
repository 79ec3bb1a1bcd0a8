"""`python -m dgr_core.jobs run <run-dir>`: run one job (see dgr_core.jobs.worker)."""

import sys

from dgr_core.jobs.worker import main

# The guard matters: backends that start worker processes with "spawn" (vLLM's engine) re-import the main module.
if __name__ == "__main__":
    sys.exit(main())
