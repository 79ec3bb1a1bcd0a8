"""Train: fine-tune the target model (LoRA or full) on a few samples of a dataset, watch the loss live, cancel or
resume, then evaluate the base and the trained model with the same settings and read them side by side.

The page builds a `TrainJobConfig`, submits the "train" job and renders what the runs wrote (loss.jsonl,
result.json); row choice, training and the before/after pairing live in dgr_core.train.
"""

from __future__ import annotations

from pathlib import Path

import plotly.express as px
import streamlit as st

from dgr_core import runs
from dgr_core.backends.base import GenerationConfig
from dgr_core.config import default_of
from dgr_core.data.store import DatasetStore
from dgr_core.errors import DGRError
from dgr_core.evaluate.benchmarks import BENCHMARKS
from dgr_core.evaluate.runner import BenchmarkSource, EvalConfig, item_prompts
from dgr_core.jobs import manager
from dgr_core.jobs.results import ResultError, TrainResult
from dgr_core.train import compare
from dgr_core.train.config import (
    DEFAULT_LORA_TARGETS,
    NLL_FIELDS,
    SubsetConfig,
    TrainConfig,
    TrainJobConfig,
    default_learning_rate,
)
from dgr_core.train.data import dataset_categories, list_selections
from dgr_core.train.job import validate
from dgr_ui import audit_view as AV
from dgr_ui.common import current_backend, current_model, show_error, workspace
from dgr_ui.jobs import job_panel, launch, tracked
from dgr_ui.state import EVAL_MODEL_REF

KEY = "train"
STRATEGY_LABELS = {
    "random": "random (seeded)",
    "lowest_nll": "lowest NLL under the base model (most like its own outputs)",
    "highest_nll": "highest NLL under the base model (most foreign)",
    "category": "one category",
    "selection": "a selection saved on the Shift page",
    "all": "every row",
}
EVAL_DEFAULT = ["arithmetic", "gsm8k100", "strongreject", "benign_edgy"]
EVAL_LIMIT = 10
EVAL_MAX_NEW = 128  # a quick before / after: short answers (the Evaluate page sets full budgets)
NONE = "(none)"

ws = workspace()
st.title("Train")
st.caption("Supervised fine-tuning on the assistant turn only (the prompt and chat template are context, never "
           "loss). The DGR paper's claim to try first: about 10 refusal samples activate refusals. Runs as a job: "
           "the loss curve updates live, Cancel keeps the finished epochs and Resume continues after them.")


# ---------------------------------------------------------------------------------------------------------------
# What to train
# ---------------------------------------------------------------------------------------------------------------


def pick_dataset(names: list[str]) -> str:
    default = names.index("demo-external-refusal") if "demo-external-refusal" in names else 0
    return st.selectbox("Dataset", names, index=default, key="train_dataset")


def subset_settings(dataset: str, names: list[str]) -> SubsetConfig:
    cols = st.columns([3, 1, 1])
    strategy = cols[0].selectbox("Which rows", list(STRATEGY_LABELS), format_func=STRATEGY_LABELS.get,
                                 key="train_strategy")
    n = int(cols[1].number_input("N rows (0 = all)", min_value=0, value=default_of(SubsetConfig, "n"), step=1, key="train_n"))
    seed = int(cols[2].number_input("Row seed", value=default_of(SubsetConfig, "seed"), step=1, key="train_subset_seed"))
    sub = SubsetConfig(strategy=strategy, n=n, seed=seed)
    if strategy == "category":
        categories = dataset_categories(ws, dataset)
        if not categories:
            st.info(f"{dataset} has no categories.")
        sub.category = st.selectbox("Category", categories, key="train_category") if categories else None
    elif strategy == "selection":
        saved = list_selections(ws, dataset)
        if not saved:
            st.info(f"No selection of {dataset} is saved yet: draw one on the Shift page.")
        sub.selection = st.selectbox("Saved selection", saved, key="train_selection") if saved else None
    elif strategy in ("lowest_nll", "highest_nll"):
        sub.nll_field = st.selectbox("Ranked by", list(NLL_FIELDS), key="train_nll_field",
                                     help="Per-sample NLL of the response under the base model (the scoring cache "
                                          "of the Shift page is reused; missing rows are scored in the job).")
    mix_cols = st.columns([3, 1])
    others = [x for x in names if x != dataset]
    mix = mix_cols[0].selectbox("Mix in rows of (e.g. demo-gsm8k-100: math / benign rows against forgetting)",
                                [NONE, *others], key="train_mix_dataset")
    sub.mix_n = int(mix_cols[1].number_input("Mixed rows", min_value=0, value=default_of(SubsetConfig, "mix_n"), step=1, key="train_mix_n"))
    sub.mix_dataset = None if mix == NONE else mix
    if st.checkbox("Hold out the evaluation's prompts", value=True, key="train_hold_out",
                   help="Rows whose prompt the before/after evaluation asks (its benchmarks and items per benchmark, "
                        "set under Before / after) are never trained on: the comparison then measures what training "
                        "activated, not what it memorised."):
        names = tuple(st.session_state.get("train_eval_benchmarks", EVAL_DEFAULT))
        limit = int(st.session_state.get("train_eval_limit", EVAL_LIMIT))
        sub.hold_out_prompts = evaluation_prompts(names, limit)
        st.caption(f"Holds out the {len(sub.hold_out_prompts)} prompts of {', '.join(names) or 'no benchmark'} at "
                   f"{limit or 'all'} items each.")
    sub.exclude_patterns, sub.pattern_judge = AV.exclude_patterns(ws, dataset)
    return sub


@st.cache_data(show_spinner=False)
def evaluation_prompts(names: tuple[str, ...], limit: int) -> list[str]:
    return item_prompts(EvalConfig(benchmarks=[BenchmarkSource(n) for n in names], limit=limit)) if names else []


def lora_settings() -> dict:
    cols = st.columns(4)
    r = int(cols[0].number_input("LoRA rank r", min_value=1, value=default_of(TrainConfig, "lora_r"), step=4, key="train_lora_r"))
    alpha = int(cols[1].number_input("LoRA alpha", min_value=1, value=default_of(TrainConfig, "lora_alpha"), step=8, key="train_lora_alpha"))
    dropout = float(cols[2].number_input("LoRA dropout", min_value=0.0, max_value=0.9, value=default_of(TrainConfig, "lora_dropout"), step=0.05,
                                         key="train_lora_dropout"))
    targets = cols[3].text_input("Target modules", value=",".join(DEFAULT_LORA_TARGETS), key="train_lora_targets",
                                 help="Comma-separated module names, or all-linear.").strip()
    return {"lora_r": r, "lora_alpha": alpha, "lora_dropout": dropout,
            "lora_targets": targets if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()]}


def train_settings() -> TrainConfig:
    method = st.radio("Method", ["lora", "full"], horizontal=True, key="train_method",
                      format_func={"lora": "LoRA adapter (peft)", "full": "full fine-tuning"}.get)
    cols = st.columns(5)
    lr = float(cols[0].number_input("Learning rate (0 = default)", min_value=0.0, value=default_of(TrainConfig, "learning_rate"), step=1e-5,
                                    format="%.2e", key="train_lr",
                                    help=f"Default {default_learning_rate(method):.0e} for {method}: high, because "
                                         "10 samples x 3 epochs is only 15 steps (see TrainConfig)."))
    epochs = int(cols[1].number_input("Epochs", min_value=1, value=default_of(TrainConfig, "epochs"), key="train_epochs"))
    batch = int(cols[2].number_input("Batch size", min_value=1, value=default_of(TrainConfig, "batch_size"), key="train_batch"))
    accum = int(cols[3].number_input("Grad. accumulation", min_value=1, value=default_of(TrainConfig, "grad_accum"), key="train_accum"))
    max_len = int(cols[4].number_input("Max length (tokens)", min_value=16, value=default_of(TrainConfig, "max_length"), step=128,
                                       key="train_max_length"))
    extra = lora_settings() if method == "lora" else {}
    with st.expander("More settings"):
        cols = st.columns(4)
        seed = int(cols[0].number_input("Training seed", value=default_of(TrainConfig, "seed"), step=1, key="train_seed"))
        warmup = float(cols[1].number_input("Warm-up fraction", min_value=0.0, max_value=0.9, value=default_of(TrainConfig, "warmup_ratio"), step=0.05,
                                            key="train_warmup"))
        decay = float(cols[2].number_input("Weight decay", min_value=0.0, value=default_of(TrainConfig, "weight_decay"), step=0.01, key="train_decay"))
        ckpt = cols[3].checkbox("Gradient checkpointing", key="train_gc", help="Less memory, ~30% slower.")
    return TrainConfig(method=method, learning_rate=lr, epochs=epochs, batch_size=batch, grad_accum=accum,
                       max_length=max_len, seed=seed, warmup_ratio=warmup, weight_decay=decay,
                       gradient_checkpointing=ckpt, **extra)


def launch_form(names: list[str]) -> None:
    dataset = pick_dataset(names)
    subset = subset_settings(dataset, names)
    train = train_settings()
    cfg = TrainJobConfig(dataset=dataset, model=current_model(), backend=current_backend(), subset=subset, train=train)
    st.caption(f"Base model `{cfg.model.ref}` (sidebar) · NLL scores from backend `{cfg.backend}` · training "
               f"always uses transformers on device `{cfg.model.device}`")
    if st.button("Launch training", type="primary", key="train_launch"):
        try:
            validate(cfg.to_dict())
        except DGRError as exc:
            show_error(exc, "Train")
            return
        launch(ws, "train", cfg.to_dict(), name=f"train-{dataset}", key=KEY)


with st.container(border=True):
    st.subheader("What to train")
    dataset_names = [i.name for i in DatasetStore(ws).list()]
    if dataset_names:
        launch_form(dataset_names)
    else:
        st.info("No datasets yet: import one on the Datasets page (or run `dgr prepare` for the demo sets).")

job_panel(tracked(KEY), KEY)


# ---------------------------------------------------------------------------------------------------------------
# Loss curve
# ---------------------------------------------------------------------------------------------------------------


def pick_run() -> manager.RunInfo | None:
    train_runs = manager.list_runs(ws, "train")
    if not train_runs:
        return None
    ids = [r.id for r in train_runs]
    current = tracked(KEY)
    index = ids.index(current.name) if current is not None and current.name in ids else 0
    chosen = st.selectbox("Train run", ids, index=index, key="train_run_pick",
                          format_func=lambda i: f"{i} · {train_runs[ids.index(i)].state}")
    return train_runs[ids.index(chosen)]


def loss_chart(run_dir: Path) -> None:
    df = runs.load_loss(run_dir)
    if df.empty:
        st.caption("The curve starts after the first optimizer step.")
        return
    fig = px.line(df, x="step", y="loss", markers=True, hover_data=["epoch"])
    fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 10, "b": 10}, xaxis_title="optimizer step",
                      yaxis_title="loss on the assistant turn")
    st.plotly_chart(fig, key=f"loss-{run_dir.name}")


@st.fragment(run_every=2.0)
def live_loss(run_dir: Path) -> None:
    loss_chart(run_dir)
    if manager.status(run_dir).get("state") in manager.FINAL:
        st.rerun()  # the run ended: draw the final page once (summary, before / after)


def show_summary(info: manager.RunInfo) -> None:
    try:
        res = info.result_as(TrainResult) or TrainResult()
    except ResultError as exc:
        show_error(exc, "Train result")
        return
    cols = st.columns(5)
    cols[0].metric("rows", res.n_samples)
    cols[1].metric("steps", res.steps)
    cols[2].metric("loss first → last", f"{_loss(res.first_loss)} → {_loss(res.final_loss)}")
    cols[3].metric("learning rate", f"{res.learning_rate:.0e}")
    cols[4].metric("time", f"{res.seconds:.0f} s")
    st.caption(f"Trained model: `{res.model_ref}` ({res.method}, saved in `{res.output}`)")
    with st.expander("Rows trained on"):
        st.write(", ".join(res.sample_ids))


def _loss(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


st.header("Loss")
chosen_run = pick_run()
if chosen_run is None:
    st.info("No train run yet: launch one above.")
elif chosen_run.state in manager.FINAL:
    loss_chart(chosen_run.run_dir)
else:
    live_loss(chosen_run.run_dir)


# ---------------------------------------------------------------------------------------------------------------
# Before / after
# ---------------------------------------------------------------------------------------------------------------


def eval_settings() -> EvalConfig:
    names = st.multiselect("Benchmarks", list(BENCHMARKS), default=EVAL_DEFAULT, key="train_eval_benchmarks")
    cols = st.columns(3)
    limit = int(cols[0].number_input("Items per benchmark", min_value=0, value=EVAL_LIMIT, step=5,
                                     key="train_eval_limit"))
    max_new = int(cols[1].number_input("Max new tokens", min_value=1, value=EVAL_MAX_NEW, step=32,
                                       key="train_eval_max_new"))
    batch = int(cols[2].number_input("Batch size", min_value=1, value=default_of(GenerationConfig, "batch_size"),
                                     key="train_eval_batch"))
    return EvalConfig(backend=current_backend(generation=True), benchmarks=[BenchmarkSource(n) for n in names], limit=limit,
                      generation=GenerationConfig(max_new_tokens=max_new, batch_size=batch))


def before_after(info: manager.RunInfo) -> None:
    st.caption("Evaluates the base model and the trained model with the same settings (greedy; an identical "
               "finished evaluation is reused) and shows both; delta = after - before.")
    settings = eval_settings()
    cols = st.columns(2)
    if cols[0].button("Evaluate base and trained model", type="primary", key="train_eval_launch"):
        try:
            compare.launch_before_after(ws, info.run_dir, settings)
        except DGRError as exc:
            show_error(exc, "Evaluate")
    if cols[1].button("Open the trained model on the Evaluate page", key="train_to_eval"):
        st.session_state[EVAL_MODEL_REF] = f"run:{info.id}"
        st.caption(f"The Evaluate page now starts with `run:{info.id}`.")
    pair = compare.eval_pair(ws, info.run_dir)
    for side in ("before", "after"):
        if pair[side] is not None and pair[side].state != "done":
            st.markdown(f"**{side}**")
            job_panel(pair[side].run_dir, f"train-eval-{side}")
    try:
        table = compare.before_after(ws, info.run_dir)
    except DGRError as exc:  # ResultError: an evaluation's result.json does not read back
        show_error(exc, "Before / after")
        return
    if table.empty:
        st.info("No finished before / after pair for this run yet.")
        return
    st.caption(f"before = `{table.attrs['before']}` · after = `{table.attrs['after']}`")
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("before", "after", "delta")})


if chosen_run is not None and chosen_run.state == "done":
    show_summary(chosen_run)
    st.header("Before / after")
    before_after(chosen_run)
