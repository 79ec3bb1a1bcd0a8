"""Risky-pattern audit of safety reasoning traces (the five patterns of the LRM safety study, arXiv 2505.15404).

Every sample (prompt, reasoning, answer) gets five 0/1 tags: lack of safety awareness, strong vacillation, weak
vacillation, harmful additions, reasoning-answer inconsistency (see `patterns`). Two kinds of judge:

- a judge model (any chat model a backend loads) that reads the sample through an editable template and answers
  with the paper's JSON (`template`); its output is validated, retried a bounded number of times with the reason,
  or marked unparsable with that reason (`engine`);
- `heuristic`: transparent keyword rules that need no model (`heuristic`), always labelled "heuristic".

Results are cached per sample like scores (`store`: keyed by the judge's identity, the template hash and the
sample's text hash), run as the `audit` job (`job`; `dgr audit`, `cli`), and summarised with Wilson intervals,
agreement / Cohen's kappa between judges, and original-vs-refined pattern changes (`stats`).
"""
