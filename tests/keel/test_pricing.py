"""Model pricing in the formation, and what it makes of a call's usage."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from keel.formation import Formation, FormationError, ModelPricing, load_formation
from keel.messages import Usage

FORMATION = {
    "models": {
        "default": {
            "provider": "echo",
            "pricing": {"input_per_mtok": 0.15, "output_per_mtok": 0.6},
        },
        "free": {"provider": "echo"},
    },
    "agents": [{"name": "assistant"}],
}


def _load(tmp_path: Path, data: object) -> Formation:
    path = tmp_path / "formation.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_formation(path, env={})


def test_pricing_is_read_per_model(tmp_path: Path) -> None:
    formation = _load(tmp_path, FORMATION)
    assert formation.models["default"].pricing == ModelPricing(
        input_per_mtok=0.15, output_per_mtok=0.6
    )
    assert formation.models["free"].pricing is None


@pytest.mark.parametrize(
    ("pricing", "field"),
    [
        ({"input_per_mtok": -1}, "input_per_mtok"),
        ({"output_per_mtok": "cheap"}, "output_per_mtok"),
        ({"input_per_token": 1}, "input_per_token"),
    ],
)
def test_bad_pricing_names_the_field(
    tmp_path: Path, pricing: dict[str, object], field: str
) -> None:
    data = {**FORMATION, "models": {"default": {"provider": "echo", "pricing": pricing}}}
    with pytest.raises(FormationError) as info:
        _load(tmp_path, data)
    assert any(p.path == f"models.default.pricing.{field}" for p in info.value.problems), [
        p.path for p in info.value.problems
    ]


def test_priced_usage_costs_tokens_at_the_prices_per_million() -> None:
    pricing = ModelPricing(input_per_mtok=2.5, output_per_mtok=10)
    usage = pricing.priced(Usage(prompt_tokens=1200, completion_tokens=300, estimated=True))
    assert usage == Usage(prompt_tokens=1200, completion_tokens=300, cost_usd=0.006, estimated=True)


def test_usage_sums_cost_and_is_estimated_if_any_part_is() -> None:
    total = Usage()
    for _ in range(10):
        total = total + Usage(prompt_tokens=1, completion_tokens=1, cost_usd=0.1)
    total = total + Usage(prompt_tokens=1, estimated=True)
    assert total == Usage(prompt_tokens=11, completion_tokens=10, cost_usd=1.0, estimated=True)
