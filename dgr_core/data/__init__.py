"""Dataset layer: load any common SFT-data shape into one canonical table and keep it in the workspace."""
