"""Check a reviewer's revised tool arguments against the tool's schema, where the schema lives."""

from __future__ import annotations

import jsonschema
from temporalio import activity

from activities._catalog import ToolCatalog
from keel.contracts.tools import ValidateArgumentsInput, ValidateArgumentsResult
from keel.names import Activities


class ApprovalActivities:
    """Validation runs on a worker because only workers hold tool schemas.

    Schemas stay out of workflow history (they can be large and change with the
    tool server), so the workflow asks the worker instead of checking itself.
    """

    def __init__(self, catalog: ToolCatalog) -> None:
        self._catalog = catalog

    @activity.defn(name=Activities.VALIDATE_ARGUMENTS)
    async def validate_arguments(self, input: ValidateArgumentsInput) -> ValidateArgumentsResult:
        """Validate `arguments` against the tool's JSON schema (any arguments if it has none)."""
        specs = await self._catalog.specs([input.tool])
        if not specs:
            return ValidateArgumentsResult()
        validator = jsonschema.Draft202012Validator(specs[0].parameters)
        return ValidateArgumentsResult(
            problems=[
                f"{'.'.join(str(p) for p in error.absolute_path) or 'arguments'}: {error.message}"
                for error in validator.iter_errors(input.arguments)
            ]
        )
