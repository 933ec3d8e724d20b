"""The formation: the user's YAML declaration of agents, models, tools and policies."""

from keel.formation._errors import FormationError, FormationProblem
from keel.formation._load import (
    default_formation,
    formation_from_data,
    load_formation,
    parse_formation,
)
from keel.formation._model_config import CircuitBreakerConfig
from keel.formation._models import (
    AgentConfig,
    ApprovalsConfig,
    EmbedderConfig,
    Formation,
    McpServerConfig,
    MemoryConfig,
    ModelConfig,
    PlanApprovalConfig,
    PlanPolicy,
    PrivacyConfig,
    ReferencesConfig,
    SessionsConfig,
    TriggerConfig,
    VectorMemoryConfig,
)
from keel.formation._pricing import ModelPricing

__all__ = [
    "AgentConfig",
    "ApprovalsConfig",
    "CircuitBreakerConfig",
    "EmbedderConfig",
    "Formation",
    "FormationError",
    "FormationProblem",
    "McpServerConfig",
    "MemoryConfig",
    "ModelConfig",
    "ModelPricing",
    "PlanApprovalConfig",
    "PlanPolicy",
    "PrivacyConfig",
    "ReferencesConfig",
    "SessionsConfig",
    "TriggerConfig",
    "VectorMemoryConfig",
    "default_formation",
    "formation_from_data",
    "load_formation",
    "parse_formation",
]
