"""Secrets scrubbed from error chains; tool payloads redacted from events; the privacy section."""

from __future__ import annotations

import traceback

import pytest

from keel.formation import FormationError, PrivacyConfig, parse_formation
from keel.redaction import REDACTED, redact_event_data, scrub_exception

SECRET = "sk-very-secret-value"


class VendorError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def test_scrubbing_cleans_the_whole_chain_in_place() -> None:
    try:
        try:
            raise OSError(f"connect failed for {SECRET}")
        except OSError as inner:
            raise VendorError(f"Incorrect API key provided: {SECRET}") from inner
    except VendorError as error:
        scrub_exception(error, [SECRET, ""])
        printed = "".join(traceback.format_exception(error))
        assert SECRET not in printed and printed.count(REDACTED) == 2
        assert error.message == f"Incorrect API key provided: {REDACTED}"


def test_events_are_redacted_only_where_privacy_asks() -> None:
    both = PrivacyConfig(redact_tool_arguments=True, redact_tool_results=True)
    call = {"call_id": "c1", "tool": "t", "arguments": {"card": "4111"}}
    result = {"call_id": "c1", "tool": "t", "content": "ok", "glimpse": "o", "is_error": False}
    assert redact_event_data("tool.call", call, both)["arguments"] == REDACTED
    assert redact_event_data("approval.requested", call, both)["arguments"] == REDACTED
    assert redact_event_data("tool.result", result, both)["content"] == REDACTED
    assert redact_event_data("tool.result", result, both)["glimpse"] == REDACTED
    assert redact_event_data("tool.result", result, both)["tool"] == "t"
    assert redact_event_data("message.completed", {"content": "hi"}, both) == {"content": "hi"}
    assert redact_event_data("tool.call", call, PrivacyConfig()) is call
    assert call["arguments"] == {"card": "4111"}  # the caller's dict is left alone


def test_the_privacy_section_is_validated() -> None:
    base = "models: {default: {provider: echo}}\nagents: [{name: a}]\n"
    assert not parse_formation(base).privacy.redact_tool_arguments
    on = parse_formation(base + "privacy: {redact_tool_arguments: true}")
    assert on.privacy.redact_tool_arguments and not on.privacy.redact_tool_results
    with pytest.raises(FormationError, match=r"privacy\.redact_tool_args"):
        parse_formation(base + "privacy: {redact_tool_args: true}")
