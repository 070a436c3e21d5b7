"""A scripted stand-in for the Anthropic Messages API, so tests can drive the real Claude Code CLI.

What is under test is the CLI with our hooks, MCP server and sprint manager around it; the only
thing replaced is the language model. A test writes the model's side of the conversation as a
*script*: a list of assistant turns, each a list of content blocks, a `str` for text or a
`ToolCall`. The CLI performs the tool calls for real and sends their results back in its next
request; the server records every request so the test can read those results.

    with FakeModel([[ToolCall("Write", {"file_path": str(path), "content": "hi\\n"})]]) as model:
        run = run_claude(project, model, allowed_tools=["Write"])      # tests/claude_cli.py
    assert model.results("Write")[0].is_error is False

A turn may also be a function of the request that asks for it (it sees the previous turn's tool
results), for scripts that branch. When the script runs out, the model ends the conversation with
a text turn (`end_turn`).

Each conversation (the CLI's session id, sent with every request) plays its script from the
start, so one server can serve several CLIs at once, such as those a sprint manager starts
itself; give a function instead of a list to pick each conversation's script from its first
request, e.g. by the task its prompt names. A test that starts the CLIs itself can as well
start one server for each.

Standard library only.
"""

from __future__ import annotations

import itertools
import json
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


@dataclass(frozen=True)
class ToolCall:
    """A tool call the scripted model makes. The server gives it an id unless the script does."""

    name: str
    input: dict[str, Any]
    id: str = ""


Block = str | ToolCall
Turn = Sequence[Block] | Callable[["Request"], Sequence[Block]]
Script = Sequence[Turn] | Callable[["Request"], Sequence[Turn]]


@dataclass(frozen=True)
class ToolResult:
    """What the CLI sent back for one tool call: the text the model would read, and the error flag
    the CLI sets when the tool failed or a hook denied it."""

    tool_use_id: str
    content: str
    is_error: bool


@dataclass
class Request:
    """One HTTP request the CLI made, as the server saw it.

    `kind` is "turn" for the main conversation (streamed, with tools: the requests the script
    answers), "side" for the CLI's other model calls (titles, summaries: answered with short
    text), and "other" for anything else (the `HEAD /` probe, token counting)."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    kind: str
    usage: dict[str, int] = field(default_factory=dict)

    @property
    def tool_results(self) -> list[ToolResult]:
        """The tool results in this request's last user message: the previous turn's outcomes."""
        messages = self.body.get("messages") or []
        if not messages or messages[-1].get("role") != "user":
            return []
        content = messages[-1].get("content")
        if not isinstance(content, list):
            return []
        return [_tool_result(block) for block in content if block.get("type") == "tool_result"]

    @property
    def session_id(self) -> str:
        """The CLI session this request belongs to ("" if the CLI did not say)."""
        return next((v for k, v in self.headers.items() if k.lower() == "x-claude-code-session-id"), "")

    @property
    def prompt(self) -> str:
        """The user's prompt: the first user message's text, without the CLI's system reminders."""
        messages = self.body.get("messages") or []
        first: dict[str, Any] = next((m for m in messages if m.get("role") == "user"), {})
        content = first.get("content", "")
        if isinstance(content, str):
            return content
        return "\n".join(b.get("text", "") for b in content if b.get("type") == "text"
                         and not b.get("text", "").startswith("<system-reminder>"))

    @property
    def tool_names(self) -> list[str]:
        """The names of the tools the CLI offered the model in this request."""
        return [tool.get("name", "") for tool in self.body.get("tools") or []]


def _tool_result(block: dict[str, Any]) -> ToolResult:
    content = block.get("content", "")
    if isinstance(content, list):  # a list of content blocks: keep their text
        content = "\n".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ToolResult(block.get("tool_use_id", ""), str(content), bool(block.get("is_error", False)))


class FakeModel:
    """A Messages API server on a free loopback port that plays `script`, one turn per request
    of each conversation.

    Use it as a context manager (it starts on enter and stops on exit). If a script function
    raises, every conversation ends and the exception is raised again on exit, so the test fails
    with the script's own traceback rather than with a puzzled CLI."""

    def __init__(self, script: Script = (), *, final_text: str = "Done.",
                 model_name: str = "") -> None:
        self.script = script
        self.final_text = final_text
        self.model_name = model_name  # answer as this model; by default, as the one asked for
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._calls: list[ToolCall] = []
        self._conversations: dict[str, tuple[Sequence[Turn], int]] = {}  # script, turns played
        self._ids = itertools.count(1)
        self._errors: list[BaseException] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> Self:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-model",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.stop()
        if exc is None and self._errors:
            raise self._errors[0]

    @property
    def base_url(self) -> str:
        assert self._server is not None, "the fake model is not running: use it in a `with` block"
        return f"http://127.0.0.1:{self._server.server_port}"

    def env(self) -> dict[str, str]:
        """The environment that points a Claude Code CLI at this server, fully offline."""
        return {
            "ANTHROPIC_BASE_URL": self.base_url,
            "ANTHROPIC_API_KEY": "sk-ant-fake-model-for-tests",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        }

    # -- what the CLI sent ------------------------------------------------------------------

    @property
    def requests(self) -> list[Request]:
        """Every request so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def turns(self) -> list[Request]:
        """The conversations' requests, in arrival order (`session_id` tells the CLIs apart): the
        first of each carries the prompt, each next one the results of the previous turn's calls."""
        return [r for r in self.requests if r.kind == "turn"]

    @property
    def tool_calls(self) -> list[ToolCall]:
        """Every tool call the server sent, with the ids the CLI answers to."""
        with self._lock:
            return list(self._calls)

    def result_of(self, call: ToolCall | str) -> ToolResult:
        """The CLI's result for one tool call (the call as sent, see `tool_calls`, or its id)."""
        wanted = call if isinstance(call, str) else call.id
        for request in self.turns:
            for result in request.tool_results:
                if result.tool_use_id == wanted:
                    return result
        raise AssertionError(f"the CLI sent no tool_result for {wanted!r}; "
                             f"calls sent: {[(c.name, c.id) for c in self.tool_calls]}")

    def results(self, tool_name: str) -> list[ToolResult]:
        """The results of every call of `tool_name` the CLI answered, in the order they were made."""
        answered = {r.tool_use_id: r for request in self.turns for r in request.tool_results}
        return [answered[c.id] for c in self.tool_calls if c.name == tool_name and c.id in answered]

    def usage(self) -> dict[str, int]:
        """The token counts the server reported, summed over every model call it answered."""
        total: dict[str, int] = {}
        for request in self.requests:
            for key, value in request.usage.items():
                total[key] = total.get(key, 0) + value
        return total

    # -- answering --------------------------------------------------------------------------

    def _record(self, request: Request) -> None:
        with self._lock:
            self._requests.append(request)

    def _blocks_for(self, request: Request) -> list[Block]:
        """The content of the answer to `request`: the conversation's next scripted turn, the
        final text once its script is done, a short text for a side call."""
        if request.kind != "turn":
            return ["OK"]
        try:
            turn = self._next_turn(request)
            blocks = [] if turn is None else list(turn(request) if callable(turn) else turn)
        except Exception as error:  # surfaced again by __exit__
            traceback.print_exc()
            with self._lock:
                self._errors.append(error)
            blocks = []
        return [self._with_id(b) if isinstance(b, ToolCall) else b for b in blocks] or [self.final_text]

    def _next_turn(self, request: Request) -> Turn | None:
        """The next turn of `request`'s conversation; None when its script is done, or when any
        script has failed (every conversation then ends, and the test fails on exit)."""
        session = request.session_id
        with self._lock:
            known = self._conversations.get(session)
        if known is None:  # the conversation's first request: pick its script
            script = self.script(request) if callable(self.script) else self.script
            known = (list(script), 0)
        turns, played = known
        with self._lock:
            self._conversations[session] = (turns, played + 1)
            if self._errors:
                return None
        return turns[played] if played < len(turns) else None

    def _with_id(self, call: ToolCall) -> ToolCall:
        sent = call if call.id else ToolCall(call.name, call.input, f"toolu_fake_{next(self._ids):04d}")
        with self._lock:
            self._calls.append(sent)
        return sent


def classify(method: str, path: str, body: dict[str, Any]) -> str:
    """"turn", "side" or "other" (see `Request.kind`)."""
    if method != "POST" or not path.startswith("/v1/messages") or "count_tokens" in path:
        return "other"
    return "turn" if body.get("stream") and body.get("tools") else "side"


def estimate_tokens(text: str) -> int:
    """Roughly four characters a token, as for English and code: enough for a plausible cost."""
    return max(1, len(text) // 4)


class _Handler(BaseHTTPRequestHandler):
    """Speaks just enough HTTP/1.1 for the CLI: keep-alive, a length on every answer."""

    protocol_version = "HTTP/1.1"
    fake: FakeModel  # set on the subclass FakeModel.start makes

    def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows what failed
        pass

    def do_HEAD(self) -> None:
        self.fake._record(Request("HEAD", self.path, dict(self.headers), {}, "other"))
        self._send(200, "text/plain", b"", head=True)

    def do_GET(self) -> None:
        self.fake._record(Request("GET", self.path, dict(self.headers), {}, "other"))
        self._send(404, "application/json", _error_body("not_found_error", "no such endpoint"))

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.loads(raw or b"{}")
        request = Request("POST", self.path, dict(self.headers), body,
                          classify("POST", self.path, body))
        self.fake._record(request)
        if "count_tokens" in self.path:
            self._send_json({"input_tokens": estimate_tokens(raw.decode())})
        elif request.kind == "other":
            self._send(404, "application/json", _error_body("not_found_error", "no such endpoint"))
        else:
            self._answer(request, raw)

    def _answer(self, request: Request, raw: bytes) -> None:
        blocks = self.fake._blocks_for(request)
        model = self.fake.model_name or request.body.get("model") or "claude-fake"
        message = _message(blocks, model, estimate_tokens(raw.decode()))
        request.usage = dict(message["usage"])
        if request.body.get("stream"):
            self._send(200, "text/event-stream", b"".join(_sse(e) for e in _stream(message)))
        else:
            self._send_json(message)

    def _send_json(self, payload: dict[str, Any]) -> None:
        self._send(200, "application/json", json.dumps(payload).encode())

    def _send(self, status: int, content_type: str, data: bytes, head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", "req_fake")
        self.end_headers()
        if not head:
            self.wfile.write(data)


def _error_body(kind: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()


def _message(blocks: Sequence[Block], model: str, input_tokens: int) -> dict[str, Any]:
    """The complete assistant message, as the non-streaming API returns it."""
    content = [
        {"type": "text", "text": b} if isinstance(b, str)
        else {"type": "tool_use", "id": b.id, "name": b.name, "input": b.input}
        for b in blocks
    ]
    calls_a_tool = any(isinstance(b, ToolCall) for b in blocks)
    return {
        "id": f"msg_fake_{input_tokens}", "type": "message", "role": "assistant", "model": model,
        "content": content,
        "stop_reason": "tool_use" if calls_a_tool else "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": estimate_tokens(json.dumps(content)),
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
    }


def _stream(message: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The same message as the streaming API sends it: the events, in order."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None,
             "usage": {**usage, "output_tokens": 1}}
    yield {"type": "message_start", "message": start}
    yield {"type": "ping"}
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            yield {"type": "content_block_start", "index": index,
                   "content_block": {"type": "text", "text": ""}}
            yield {"type": "content_block_delta", "index": index,
                   "delta": {"type": "text_delta", "text": block["text"]}}
        else:
            yield {"type": "content_block_start", "index": index,
                   "content_block": {**block, "input": {}}}
            arguments = json.dumps(block["input"])
            middle = len(arguments) // 2  # in two pieces, as the real API streams them
            for piece in (arguments[:middle], arguments[middle:]):
                yield {"type": "content_block_delta", "index": index,
                       "delta": {"type": "input_json_delta", "partial_json": piece}}
        yield {"type": "content_block_stop", "index": index}
    yield {"type": "message_delta",
           "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
           "usage": {"output_tokens": usage["output_tokens"]}}
    yield {"type": "message_stop"}


def _sse(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
