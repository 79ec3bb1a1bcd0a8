"""DGR Lens engine: datasets, models, scoring, refinement, training and evaluation.

Pure Python; never imports streamlit. Everything a page does, a script can do:
see `dgr_core.cli` (`dgr --help`) and `python -m dgr_core.jobs run <run-dir>`.
"""

__version__ = "0.1.0"
