"""`AuditConfig`: one audit run. A plain dataclass of JSON values; `to_dict` / `from_dict` round-trip it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from dgr_core.audit.heuristic import JUDGE_NAME as HEURISTIC
from dgr_core.audit.template import DEFAULT_TEMPLATE, check_template
from dgr_core.config import Config
from dgr_core.errors import SpecError
from dgr_core.models.loading import ModelSpec


@dataclass
class AuditConfig(Config):
    """Which dataset, which judge, and how the judge model runs. (key) fields go into the cache key."""

    section: ClassVar[str] = "audit"

    dataset: str = ""  # a dataset in the workspace
    judge: str = HEURISTIC  # (key) "heuristic" (keyword rules, no model) or a chat model: folder or hub id
    backend: str = "hf"  # (key, via the model identity) "hf", "vllm" or "fake" (tests)
    revision: str | None = None  # (key) hub revision of the judge model
    device: str = "auto"  # where the judge model runs
    dtype: str = "auto"  # (key) the judge model's dtype
    trust_remote_code: bool = False  # run code shipped with the judge model (off unless asked)
    template: str = ""  # (key, via its hash) the judge prompt; "" = dgr_core.audit.template.DEFAULT_TEMPLATE
    max_new_tokens: int = 512  # (key) reply budget; a reasoning judge needs room for its <think> block
    max_retries: int = 2  # (key) re-asks after an invalid reply (the reason is sent back); then "unparsable"
    batch_size: int = 8  # prompts per generate call
    chunk_size: int = 32  # samples per cache write = the unit a resumed job skips
    limit: int | None = None  # audit only the first N rows
    retry_unparsable: bool = False  # judge again the samples the cache holds as unparsable

    @property
    def is_heuristic(self) -> bool:
        return self.judge.strip().lower() == HEURISTIC

    @property
    def label(self) -> str:
        """How results name this judge: "heuristic" or "judge:<model>"."""
        return HEURISTIC if self.is_heuristic else f"judge:{self.judge}"

    @property
    def effective_template(self) -> str:
        return self.template if self.template.strip() else DEFAULT_TEMPLATE

    def model_spec(self) -> ModelSpec:
        return ModelSpec(self.judge, revision=self.revision, device=self.device, dtype=self.dtype,
                         trust_remote_code=self.trust_remote_code)

    def validate(self) -> None:
        """SpecError naming the bad field (no model loads here)."""
        if not isinstance(self.dataset, str) or not self.dataset:
            raise SpecError("audit: 'dataset' must be the name of a dataset in the workspace.")
        if not isinstance(self.judge, str) or not self.judge.strip():
            raise SpecError("audit: 'judge' must be 'heuristic' or a chat model (folder or Hugging Face id).")
        for name, low in (("max_new_tokens", 1), ("max_retries", 0), ("batch_size", 1), ("chunk_size", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise SpecError(f"audit: '{name}' must be an integer >= {low}, not {value!r}.")
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 1):
            raise SpecError("audit: 'limit' must be a positive number of rows, or empty for all.")
        if not self.is_heuristic:
            check_template(self.effective_template)
            from dgr_core.backends.base import available_backends

            if self.backend not in available_backends():
                raise SpecError(f"audit: unknown backend {self.backend!r}; choose one of {available_backends()}.")
