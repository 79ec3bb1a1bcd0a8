"""Distribution-shift measurement: two-sample statistics (`dgr_core.shift.stats`) and 2-D projections of
embeddings (`dgr_core.shift.projection`). Import the submodules directly; this package imports nothing heavy."""
