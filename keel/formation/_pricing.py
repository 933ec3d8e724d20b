"""What a model's tokens cost: `models.<name>.pricing`, in US dollars per million tokens."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from keel.messages import COST_DIGITS, Usage

_PER_MTOK = 1_000_000


class ModelPricing(BaseModel):
    """A model's list prices, USD per million tokens (`input_per_mtok`, `output_per_mtok`)."""

    # A typo in a formation key must fail loudly, not be ignored (as `_Strict` says).
    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_mtok: float = Field(default=0, ge=0, le=1_000_000)
    """Prompt tokens (cached ones included), USD per million."""
    output_per_mtok: float = Field(default=0, ge=0, le=1_000_000)
    """Completion tokens, USD per million."""

    def priced(self, usage: Usage) -> Usage:
        """`usage` with its `cost_usd` at these prices (estimated counts are priced alike)."""
        cost = (
            usage.prompt_tokens * self.input_per_mtok
            + usage.completion_tokens * self.output_per_mtok
        ) / _PER_MTOK
        return usage.model_copy(update={"cost_usd": round(cost, COST_DIGITS)})
