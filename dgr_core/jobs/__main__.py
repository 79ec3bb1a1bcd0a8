"""`python -m dgr_core.jobs run <run-dir>`: run one job (see dgr_core.jobs.worker)."""

import sys

from dgr_core.jobs.worker import main

sys.exit(main())
