"""Named session-state keys for what one page hands to another (or the sidebar to every page).

A page's own widget keys stay local to the page; a key listed here is a contract between pages, so both sides
import it from here instead of repeating the string.
"""

from __future__ import annotations

TARGET_MODEL = "target_model"  # sidebar -> every page: the ModelSpec of the target model
BACKEND = "backend"  # sidebar -> every page: "hf", "vllm" or "fake" (the sidebar's selectbox key)
COMPARE_A = "compare_a"  # Refine -> Compare: dataset A (the original), also Compare's own selectbox key
COMPARE_B = "compare_b"  # Refine -> Compare: dataset B (the refined set)
EVAL_MODEL_REF = "eval_model_ref"  # Train -> Evaluate: "run:<id>" of the model just trained
SHIFT_DATASETS = "shift_datasets"  # -> Shift: the datasets to compare (its multiselect key)
