"""Memory work that needs the model: summaries of old messages, facts drawn from a turn.

These run where the session's model calls run (its own task queue, if it has one).
"""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import activity

from activities._heartbeat import with_heartbeat
from activities._logging import activity_log_context
from activities.providers import ModelRequest, get_provider
from keel.contracts.memory import (
    ExtractFactsInput,
    ExtractFactsResult,
    SummarizeInput,
    SummarizeResult,
)
from keel.formation import ModelConfig
from keel.logging import get_logger
from keel.messages import Message, Summary
from keel.names import Activities
from keel.store import TranscriptStore

SUMMARY_MAX_CHARS = 4000
MESSAGE_CHARS_IN_PROMPT = 2000
"""Each message's share of a summary prompt: long tool results are cut, not summarised whole."""
MAX_FACTS = 5
FACT_MAX_CHARS = 300
_SUMMARY_PROMPT = (
    "You keep a running summary of a conversation between a user and an assistant, so the"
    " assistant remembers it after the messages leave its context window. Update the summary"
    " with the new messages. Keep names, numbers, decisions, open questions and the user's"
    " preferences; drop small talk. Answer with the summary alone, at most 250 words."
)
_FACTS_PROMPT = (
    "From the exchange below, list lasting facts about the user that are worth remembering in"
    " later conversations: preferences, personal details, ongoing projects. One fact per line,"
    " each line starting with '- ', written about 'the user'. Answer NONE if there are none."
)
log = get_logger(__name__)


class MemoryModelActivities:
    """Activities that call the model on behalf of memory."""

    def __init__(self, store: TranscriptStore) -> None:
        self._store = store

    @activity.defn(name=Activities.SUMMARIZE)
    async def summarize(self, input: SummarizeInput) -> SummarizeResult:
        """Update the session's summary incrementally and store it under `upto_seq`.

        Idempotent: a retry recomputes the same summary key and overwrites it.
        """
        with activity_log_context():
            previous = await self._store.latest_summary(input.session)
            start = input.from_seq
            if previous is not None and previous.upto_seq >= input.upto_seq:
                return SummarizeResult(upto_seq=previous.upto_seq, chars=len(previous.content))
            if previous is not None:
                start = min(start, previous.upto_seq)
            messages = await self._store.messages(
                input.session, after_seq=start - 1, limit=input.upto_seq - start
            )
            lines = [
                f"{m.role}{f' ({m.name})' if m.name else ''}: {m.content[:MESSAGE_CHARS_IN_PROMPT]}"
                for m in messages
                if m.seq < input.upto_seq
            ]
            prompt = (
                f"Summary so far:\n{previous.content if previous else '(none)'}\n\n"
                "New messages:\n" + "\n".join(lines)
            )
            text = await _ask(input.model, _SUMMARY_PROMPT, prompt, input.turn_id)
            summary = Summary(
                upto_seq=input.upto_seq,
                content=text[:SUMMARY_MAX_CHARS],
                created_at=datetime.now(UTC),
            )
            await self._store.save_summary(input.session, summary)
            log.info("summary stored", upto_seq=input.upto_seq, messages=len(lines))
            return SummarizeResult(upto_seq=summary.upto_seq, chars=len(summary.content))

    @activity.defn(name=Activities.EXTRACT_FACTS)
    async def extract_facts(self, input: ExtractFactsInput) -> ExtractFactsResult:
        """Lasting facts about the user in one exchange, as the model sees them."""
        with activity_log_context():
            exchange = (
                f"User: {input.user_text[:MESSAGE_CHARS_IN_PROMPT]}\n"
                f"Assistant: {input.answer[:MESSAGE_CHARS_IN_PROMPT]}"
            )
            text = await _ask(input.model, _FACTS_PROMPT, exchange, "facts")
            facts = [
                line.strip()[2:].strip()[:FACT_MAX_CHARS]
                for line in text.splitlines()
                if line.strip().startswith("- ") and line.strip()[2:].strip()
            ]
            return ExtractFactsResult(facts=facts[:MAX_FACTS])


async def _ask(model: ModelConfig, system_prompt: str, text: str, turn_id: str) -> str:
    """One model call without tools; returns the answer's text."""
    request = ModelRequest(
        model=model,
        system_prompt=system_prompt,
        messages=[
            Message(seq=0, role="user", content=text, turn_id=turn_id, created_at=datetime.now(UTC))
        ],
        attempt=activity.info().attempt,
    )
    response = await with_heartbeat(get_provider(model).complete(request))
    return response.content.strip()
