"""`keel chat`: talk to an agent from a terminal; answers stream in as the model writes them."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

import httpx

from keel.approvals import Decision
from keel.client import Event, Keel, KeelConnectionError, KeelError, Message
from keel.sse import SseEvent

HISTORY_SHOWN = 6
"""Messages printed when resuming a session."""
QUIT = frozenset({"/quit", "/exit"})
DECISIONS: dict[str, Decision] = {"a": "approve", "r": "reject", "v": "revise"}


class ChatClient:
    """A prompt loop over the client SDK: one streamed chat per message.

    Args:
        keel: The API's client, or an `httpx.Client` with its base URL (and identity headers).
        stdin: Where the user types.
        stdout: Where the conversation appears.
    """

    def __init__(self, keel: Keel | httpx.Client, stdin: TextIO, stdout: TextIO) -> None:
        self._keel = keel if isinstance(keel, Keel) else Keel(http_client=keel)
        self._in = stdin
        self._out = stdout
        self.session_id: str | None = None
        self.agent = "assistant"
        self._attempts: dict[int, int] = {}
        """The attempt whose text is showing, per model call (step) of the turn."""
        self._mid_line = False
        """Streamed text left the cursor at the end of a line of the answer."""
        self._closed = False

    def start(self, agent: str | None) -> bool:
        """Start a new session with `agent` (the default one when None)."""
        try:
            session = self._keel.sessions.create(agent)
        except KeelError as err:
            return self._failed(err)
        self.session_id, self.agent = session.id, session.agent
        self._write(f"session {self.session_id} with {self.agent}; /quit to leave\n")
        return True

    def resume(self, session_id: str) -> bool:
        """Continue a session, showing its last few messages first."""
        try:
            session = self._keel.sessions.get(session_id)
        except KeelError as err:
            return self._failed(err)
        self.session_id, self.agent = session.id, session.agent
        self._write(f"resuming session {self.session_id} with {self.agent}; /quit to leave\n")
        for message in session.messages[-HISTORY_SHOWN:]:
            self._show_message(message)
        if session.status == "closed":
            self._write("(this session is closed)\n")
            return False
        return True

    def loop(self) -> None:
        """Prompt, send, stream the answer; until /quit, end of input or a closed session."""
        while not self._closed:
            self._write("you> ")
            line = self._in.readline()
            if not line:
                self._write("\n")
                return
            text = line.strip()
            if text in QUIT:
                return
            if text:
                self.send(text)

    def send(self, text: str) -> None:
        """Send one message and show its turn as it streams."""
        self._attempts.clear()
        try:
            with self._keel.stream(text, session_id=self.session_id) as events:
                for event in events:
                    self.handle(event)
        except KeelError as err:
            self._failed(err)

    def handle(self, event: Event | SseEvent) -> None:
        """Show one event of a turn (and ask for a decision on an approval)."""
        if isinstance(event, SseEvent):
            event = Event.from_sse(event)
        data, kind = event.data, event.type
        if kind == "message.delta":
            self._delta(data)
        elif kind == "message.completed":
            # Without a delta channel nothing has streamed: show the answer whole.
            self._write("\n" if self._mid_line else f"{self.agent}> {data['content']}\n")
            self._mid_line = False
        elif kind == "tool.call":
            arguments = json.dumps(data.get("arguments") or {}, ensure_ascii=False)
            self._write(f"{self._break()}  -> {data['tool']}({arguments})\n")
        elif kind == "tool.result":
            mark = "!!" if data.get("is_error") else "<-"
            self._write(f"  {mark} {data['tool']}: {data.get('glimpse', '')}\n")
        elif kind == "approval.requested":
            self._approve(data)
        elif kind == "approval.decided":
            self._write(f"  approval {data['decision']}\n")
        elif kind == "turn.failed":
            self._write(f"{self._break()}[turn failed: {data.get('error', '')}]\n")
        elif kind == "turn.cancelled":
            self._write(f"{self._break()}[turn cancelled]\n")
        elif kind == "session.closed":
            self._write(f"{self._break()}[session closed]\n")
            self._closed = True

    def _delta(self, data: dict[str, Any]) -> None:
        step, attempt = data["step"], data["attempt"]
        showing = self._attempts.get(step)
        if showing is not None and attempt > showing:
            # The model call was retried: what it wrote so far is void.
            self._write(f"{self._break()}[retrying]\n")
        if showing is None or attempt >= showing:
            self._attempts[step] = attempt
            if not self._mid_line:
                self._write(f"{self.agent}> ")
                self._mid_line = True
            self._write(data["text"])

    def _approve(self, data: dict[str, Any]) -> None:
        shown = json.dumps(data.get("arguments") or {}, ensure_ascii=False)
        self._write(f"{self._break()}  ? {data['tool']}({shown}) needs approval\n")
        choice = ""
        while choice not in DECISIONS:
            choice = self._ask("  approve, reject or revise? [a/r/v] ")[:1].lower()
        decision = DECISIONS[choice]
        arguments: dict[str, Any] | None = None
        feedback: str | None = None
        if choice == "v":
            edited = self._ask("  new arguments as JSON (empty keeps them): ")
            try:
                arguments = json.loads(edited) if edited else None
            except json.JSONDecodeError:
                self._write("  not JSON; keeping the arguments\n")
        if choice in ("r", "v"):
            feedback = self._ask("  feedback for the model (optional): ") or None
        assert self.session_id is not None, "an approval comes in a session's turn"
        try:
            self._keel.approvals.decide(
                self.session_id,
                data["approval_id"],
                decision,
                feedback=feedback,
                arguments=arguments,
            )
        except KeelError as err:
            self._failed(err)

    def _show_message(self, message: Message) -> None:
        role, content = message.role, message.content
        if role == "user":
            self._write(f"you> {content}\n")
        elif role == "tool":
            self._write(f"  <- {message.name or 'tool'}: {content[:200]}\n")
        elif content:
            self._write(f"{self.agent}> {content}\n")

    def _break(self) -> str:
        """A line break if streamed text left the cursor mid-line."""
        if self._mid_line:
            self._mid_line = False
            return "\n"
        return ""

    def _ask(self, prompt: str) -> str:
        self._write(prompt)
        return self._in.readline().strip()

    def _failed(self, err: KeelError) -> bool:
        """Say what went wrong; False, for the caller to return."""
        if isinstance(err, KeelConnectionError):
            raise err  # nothing more to do here: `run_chat` says so and exits
        self._write(f"error {err.status}: {err.detail}\n" if err.problem else f"error: {err}\n")
        return False

    def _write(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()


def run_chat(
    url: str,
    *,
    session_id: str | None = None,
    agent: str | None = None,
    user: str | None = None,
    api_key: str | None = None,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
) -> int:
    """Chat until the user leaves; returns the exit code.

    Args:
        url: The API's base URL.
        session_id: Resume this session instead of starting one.
        agent: The agent of a new session (default: the formation's).
        user: Sent as `X-User-Id`.
        api_key: Sent as a bearer token.
        stdin: Where the user types.
        stdout: Where the conversation appears.
    """
    # The stream's idle limit is the only read timeout of a turn: one may wait for a
    # human approval for hours, and the API's heartbeats keep its stream alive meanwhile.
    try:
        with Keel(url, api_key=api_key, user_id=user) as keel:
            chat = ChatClient(keel, stdin, stdout)
            if not (chat.resume(session_id) if session_id else chat.start(agent)):
                return 1
            chat.loop()
    except KeelConnectionError as err:
        stdout.write(f"cannot reach {url}: {err.__cause__ or err}\n")
        return 1
    return 0
