"""Streamlit-only helpers shared by the pages: the sidebar, the job panel, chart builders. Not part of the core."""
