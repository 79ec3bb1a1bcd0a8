"""Streamlit pieces of the risky-pattern audit, shared by the pages: the Datasets page's Audit tab, pattern facets
and badges, the Compare panel (which patterns a refinement removed or introduced), the Shift panel (rates with
Wilson intervals), Train's "exclude samples with pattern X", and the Safety-tax / report table.

Everything here reads what `dgr_core.audit` wrote (tag tables, rates) or submits the `audit` job; the heuristic is
labelled "heuristic" wherever its tags appear.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dgr_core.audit import stats
from dgr_core.audit.config import AuditConfig
from dgr_core.audit.patterns import DESCRIPTIONS, LABELS, PATTERNS
from dgr_core.audit.store import AuditInfo, list_audits
from dgr_core.audit.template import DEFAULT_TEMPLATE
from dgr_core.data.schema import DatasetInfo
from dgr_core.errors import DGRError
from dgr_core.workspace import Workspace
from dgr_ui.common import current_backend, current_model, show_error
from dgr_ui.jobs import job_panel, launch, tracked

HEURISTIC_NOTE = ("heuristic = transparent keyword rules (no model): cheap, known to miss paraphrases and to fire on "
                  "benign prompts; see README, 'Risky-pattern audit'.")
SHORT = {"lack_of_safety_awareness": "lack", "strong_vacillation": "strong vac.", "weak_vacillation": "weak vac.",
         "harmful_additions": "additions", "inconsistency": "inconsistency"}
PATTERN_HELP = "\n".join(f"- **{LABELS[p]}**: {DESCRIPTIONS[p]}" for p in PATTERNS)


def judge_name(judge: str) -> str:
    """How a judge is shown: the heuristic always says so."""
    return "heuristic (keyword rules)" if judge == "heuristic" else judge.removeprefix("judge:")


def pick_audit(audits: list[AuditInfo], key: str, label: str = "Pattern tags from") -> AuditInfo | None:
    if not audits:
        return None
    names = [a.judge for a in audits]
    judge = st.selectbox(label, names, format_func=judge_name, key=key, help=PATTERN_HELP)
    return audits[names.index(judge)]


def rates_frame(tags: pd.DataFrame) -> pd.DataFrame:
    """Printable rates: pattern, tagged, of, rate %, 95% Wilson interval."""
    r = stats.pattern_rates(tags)
    return pd.DataFrame({"pattern": r["label"], "tagged": r["k"], "of": r["n"], "rate %": 100 * r["rate"],
                         "95% CI (Wilson)": [f"{100 * lo:.1f}–{100 * hi:.1f}" for lo, hi in
                                             zip(r["ci_low"], r["ci_high"], strict=True)],
                         "unparsable": r["n_unparsable"]})


# ---------------------------------------------------------------- Datasets page


def with_tags(ws: Workspace, info: DatasetInfo, table: pd.DataFrame) -> pd.DataFrame:
    """`table` with the pattern columns of the chosen audit of this dataset (unchanged when there is none)."""
    chosen = pick_audit(list_audits(ws, info.name), key=f"audit_tags_{info.name}")
    if chosen is None:
        return table
    if chosen.is_stale(info.fingerprint):
        st.warning("These pattern tags were computed before the dataset last changed: re-run the audit (Audit tab).")
    if chosen.is_heuristic:
        st.caption(HEURISTIC_NOTE)
    return stats.with_tags(table, chosen.tags())


def tag_columns(table: pd.DataFrame) -> list[str]:
    return [p for p in PATTERNS if p in table.columns]


def pattern_filter(view: pd.DataFrame, fp: str) -> pd.DataFrame:
    """Facets: rows having every chosen pattern, and none of the excluded ones."""
    cols = tag_columns(view)
    if not cols:
        return view
    c1, c2 = st.columns(2)
    having = c1.multiselect("Has pattern", cols, format_func=LABELS.get, key=f"ds_has_pattern_{fp}")
    lacking = c2.multiselect("Lacks pattern", cols, format_func=LABELS.get, key=f"ds_lacks_pattern_{fp}")
    return stats.filter_patterns(view, having=having, lacking=lacking)


def column_config(table: pd.DataFrame) -> dict:
    return {p: st.column_config.NumberColumn(SHORT[p], width="small", help=DESCRIPTIONS[p])
            for p in tag_columns(table)}


def sample_badges(row: pd.Series) -> None:
    cols = [p for p in PATTERNS if p in row.index]
    if not cols:
        return
    if row.get("audit_status") == "unparsable":
        st.markdown(":gray-badge[audit: unparsable]")
        return
    on = [LABELS[p] for p in cols if pd.notna(row[p]) and int(row[p]) == 1]
    st.markdown(" ".join(f":red-badge[{x}]" for x in on) if on else ":green-badge[no risky pattern tagged]")


def audit_tab(ws: Workspace, info: DatasetInfo) -> None:
    """Existing audits (rates, agreement, unparsable reasons) and the form that starts a new one."""
    st.caption("Tags every sample with the five risky reasoning patterns of the LRM safety study (arXiv 2505.15404): "
               + ", ".join(LABELS[p] for p in PATTERNS) + ". " + HEURISTIC_NOTE)
    audits = list_audits(ws, info.name)
    for a in audits:
        show_audit(a, info)
    if len(audits) > 1:
        show_agreement(audits)
    audit_form(ws, info.name)


def show_audit(a: AuditInfo, info: DatasetInfo) -> None:
    tags = a.tags()
    st.markdown(f"**{judge_name(a.judge)}** · {len(tags)} rows · run `{a.meta.get('run', '?')}`"
                + (" · :orange-badge[stale: the dataset changed]" if a.is_stale(info.fingerprint) else ""))
    st.dataframe(rates_frame(tags), hide_index=True, width="stretch",
                 column_config={"rate %": st.column_config.NumberColumn(format="%.1f")})
    bad = tags[tags["status"] != "ok"]
    if len(bad):
        with st.expander(f"{len(bad)} unparsable replies"):
            st.dataframe(bad[["id", "reason", "attempts"]], hide_index=True, width="stretch")


def show_agreement(audits: list[AuditInfo]) -> None:
    heur = [a for a in audits if a.is_heuristic]
    models = [a for a in audits if not a.is_heuristic]
    if not heur or not models:
        return
    model = models[0]
    table = stats.agreement(heur[0].tags(), model.tags())
    st.markdown(f"**Agreement: heuristic vs {judge_name(model.judge)}** (rows both parsed)")
    st.dataframe(table[["label", "n", "agreement", "kappa", "rate_a", "rate_b"]].rename(
        columns={"label": "pattern", "kappa": "Cohen's κ", "rate_a": "heuristic rate", "rate_b": "judge rate"}),
        hide_index=True, width="stretch")


def audit_form(ws: Workspace, dataset: str) -> None:
    st.markdown("**Run an audit**")
    kind = st.radio("Judge", ["heuristic", "model"], horizontal=True, key="ds_audit_kind",
                    format_func={"heuristic": "heuristic (keyword rules, no model)",
                                 "model": "a judge model"}.get)
    cfg = AuditConfig(dataset=dataset)
    if kind == "model":
        cfg = model_settings(cfg)
    key = f"datasets-audit-{dataset}"
    if st.button("Audit", key="ds_audit", type="primary"):
        launch(ws, "audit", cfg.to_dict(), name=f"audit {dataset}", key=key)
    job_panel(tracked(key), key)


def model_settings(cfg: AuditConfig) -> AuditConfig:
    spec, backend = current_model(), current_backend(generation=True)
    c1, c2, c3 = st.columns(3)
    cfg.judge = c1.text_input("Judge model (folder or Hugging Face id)", value=spec.ref, key="ds_audit_judge").strip()
    cfg.max_new_tokens = int(c2.number_input("Max new tokens", 16, 32768, 512, step=64, key="ds_audit_tokens",
                                             help="a reasoning judge needs room for its <think> block"))
    cfg.max_retries = int(c3.number_input("Retries", 0, 5, 2, key="ds_audit_retries",
                                          help="re-asks after an invalid reply (with the reason); then unparsable"))
    cfg.backend, cfg.device, cfg.dtype = backend, spec.device, spec.dtype
    cfg.trust_remote_code = spec.trust_remote_code
    template = st.text_area("Judge template ({prompt}, {reasoning}, {answer} are filled in)", DEFAULT_TEMPLATE,
                            height=300, key="ds_audit_template")
    cfg.template = "" if template.strip() == DEFAULT_TEMPLATE.strip() else template
    st.caption(f"Backend `{backend}`, device and dtype from the sidebar. Verdicts are cached per judge, template "
               "and sample: a re-run judges only new or changed rows.")
    return cfg


# ---------------------------------------------------------------- Compare page


def compare_panel(ws: Workspace, names: tuple[str, str], pairs: pd.DataFrame, current: tuple[str, str]) -> None:
    """Which patterns B removed or introduced against A, over all pairs and for the pair on screen."""
    a, b = names
    common = sorted({x.judge for x in list_audits(ws, a)} & {x.judge for x in list_audits(ws, b)})
    with st.expander("Risky patterns (audit): removed or introduced by B", expanded=bool(common)):
        if not common:
            st.caption(f"Audit both {a} and {b} with the same judge (Datasets → Audit) to see which risky patterns "
                       "B removed or introduced.")
            return
        judge = st.selectbox("Tags from", common, format_func=judge_name, key="compare_audit_judge")
        try:
            ta = next(x for x in list_audits(ws, a) if x.judge == judge).tags()
            tb = next(x for x in list_audits(ws, b) if x.judge == judge).tags()
            changes = stats.pattern_changes(ta, tb, pairs)
        except DGRError as exc:
            show_error(exc, "Audit")
            return
        if judge == "heuristic":
            st.caption(HEURISTIC_NOTE)
        st.dataframe(stats.change_summary(changes).drop(columns="pattern"), hide_index=True, width="stretch")
        mine = changes[(changes["original_id"] == current[0]) & (changes["refined_id"] == current[1])]
        pair_badges(mine)


def pair_ids(df_a: pd.DataFrame, df_b: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """original_id / refined_id of the Compare page's pairs (rows `pos_a` of A and `pos_b` of B)."""
    ids_a, ids_b = df_a["id"].astype(str).to_numpy(), df_b["id"].astype(str).to_numpy()
    return pd.DataFrame({"original_id": ids_a[pairs["pos_a"].astype(int).to_numpy()],
                         "refined_id": ids_b[pairs["pos_b"].astype(int).to_numpy()]})


def pair_badges(mine: pd.DataFrame) -> None:
    if mine.empty:
        st.caption("This pair has no tags on one side (unparsable or not audited).")
        return
    rec = mine.iloc[0]
    colour = {"removed": "green", "introduced": "red", "kept": "orange"}
    parts = [f":{colour[rec[p]]}-badge[{LABELS[p]}: {rec[p]}]" for p in PATTERNS if rec[p]]
    st.markdown("This pair: " + (" ".join(parts) if parts else "no risky pattern on either side"))


# ---------------------------------------------------------------- Shift page


def shift_panel(ws: Workspace, names: list[str]) -> None:
    """Pattern rates per dataset with Wilson 95% intervals (each dataset's preferred audit)."""
    rows = []
    for name in names:
        for a in list_audits(ws, name):
            r = stats.pattern_rates(a.tags())
            for rec in r.to_dict("records"):
                rows.append({"dataset": name, "judge": judge_name(a.judge), **rec})
    with st.expander("Risky-pattern rates (audit)", expanded=False):
        if not rows:
            st.caption("None of these datasets is audited yet (Datasets → Audit, or `dgr audit`).")
            return
        frame = pd.DataFrame(rows)
        st.plotly_chart(rate_intervals(frame), key="shift_pattern_rates")
        st.dataframe(frame[["dataset", "judge", "label", "k", "n", "rate", "ci_low", "ci_high"]], hide_index=True,
                     width="stretch")
        st.caption("Rate of samples tagged with each pattern; bars are Wilson 95% intervals. " + HEURISTIC_NOTE)


def rate_intervals(frame: pd.DataFrame):
    """Grouped bars: rate per pattern, one colour per dataset (and judge), Wilson intervals as error bars."""
    import plotly.express as px

    f = frame.assign(series=frame["dataset"] + " · " + frame["judge"], pct=100 * frame["rate"],
                     plus=100 * (frame["ci_high"] - frame["rate"]), minus=100 * (frame["rate"] - frame["ci_low"]))
    fig = px.bar(f, x="label", y="pct", color="series", barmode="group", error_y="plus", error_y_minus="minus",
                 labels={"label": "", "pct": "samples tagged (%)", "series": ""})
    fig.update_layout(height=360, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig


# ---------------------------------------------------------------- Train page


def exclude_patterns(ws: Workspace, dataset: str) -> tuple[list[str], str]:
    """The patterns whose samples to leave out of training, and the judge whose tags decide it."""
    audits = list_audits(ws, dataset)
    if not audits:
        st.caption(f"Audit {dataset} (Datasets → Audit) to exclude samples with risky patterns.")
        return [], ""
    c1, c2 = st.columns([3, 2])
    chosen = c1.multiselect("Exclude samples with pattern", list(PATTERNS), format_func=LABELS.get,
                            key="train_exclude_patterns", help=PATTERN_HELP)
    audit = pick_audit(audits, key="train_exclude_judge", label="Tags from") if chosen else audits[0]
    if chosen and audit is not None and audit.is_heuristic:
        c2.caption(HEURISTIC_NOTE)
    return chosen, (audit.judge if audit else "")


# ---------------------------------------------------------------- Safety-tax page


def safety_tax_table(table: pd.DataFrame) -> None:
    from dgr_core.audit.training import format_rates

    st.markdown("**Risky patterns in each run's training data** (rate [Wilson 95% interval])")
    if table.empty or not (table["judge"] != "").any():
        st.caption("No training dataset is audited yet (Datasets → Audit, or `dgr audit`).")
        return
    st.dataframe(format_rates(table), hide_index=True, width="stretch")
    st.caption("Tags from a judge model's audit where one exists, else the heuristic's. " + HEURISTIC_NOTE)
