"""Scoring engine: teacher-forced per-token log-probs, per-segment NLL and pooled embeddings under a target model,
batched by a token budget, cached by content, run as jobs."""
