"""The tool loop: offer the tools, run the calls the model makes (once approved), feed
the results back as ``tool`` messages, and stop at an answer or after ``max_rounds``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmtui.backends.tools import call_schema
from llmtui.errors import InvalidInput
from llmtui.tools.approval import Approver
from llmtui.tools.core import CallRecord, ToolSet

#: Rounds of calls before the model must answer in words.
MAX_ROUNDS = 5


@dataclass
class LoopResult:
    """The answer, the whole conversation (with the calls and their results), each call
    made, and the daemon's last ``done`` frame (stats)."""

    text: str
    messages: list[dict[str, Any]]
    calls: list[CallRecord] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)
    rounds: int = 0


def forced_schema(toolset: ToolSet, choice: str | None) -> dict[str, Any] | None:
    """The grammar for ``--tool-choice``: "required" (some call) or a tool's name (that
    call); "auto" or None forces nothing."""
    if choice in (None, "auto"):
        return None
    if not toolset:
        raise InvalidInput("--tool-choice needs tools (--tools, --functions or --mcp)")
    if choice == "required":
        return call_schema(toolset.specs())
    if choice not in toolset.names():
        raise InvalidInput(f"--tool-choice must be auto, required or a tool's name "
                           f"({', '.join(toolset.names())}), not '{choice}'")
    return call_schema(toolset.specs(), choice)


def run_loop(client: Any, model: str, messages: list[dict[str, Any]], toolset: ToolSet, *,
             approver: Approver | None = None, tool_choice: str | None = None,
             max_rounds: int = MAX_ROUNDS, on_text: Callable[[str], None] | None = None,
             on_call: Callable[[CallRecord], None] | None = None,
             **chat: Any) -> LoopResult:
    """Chat with tools through ``client`` (an ``llmtui.Client``). ``messages`` is not
    changed; the result holds the conversation with every call and result added.

    ``tool_choice``: "required" or a tool's name forces a call in the first round (with a
    grammar, so even a tiny model writes a well-formed one); later rounds are free, and
    the last round offers no tools, so the loop ends with an answer. ``on_text`` gets the
    answer as it streams; ``on_call`` each call once it ran (or was refused). ``chat``:
    more fields for /api/chat (options, keep_alive, think, ...)."""
    if max_rounds < 0:
        raise InvalidInput("the number of tool rounds must be 0 or more")
    approver = approver or Approver()
    forced = forced_schema(toolset, tool_choice)
    convo = [dict(m) for m in messages]
    result = LoopResult("", convo)
    for rnd in range(max_rounds + 1):
        offer = toolset.specs() if toolset and rnd < max_rounds else None
        kw = dict(chat)
        if offer:
            kw["tools"] = offer
            if rnd == 0 and forced is not None:
                kw["format"] = forced
        text, final = _one_turn(client, model, convo, kw, on_text)
        result.rounds, result.final = rnd + 1, final
        calls = ((final.get("message") or {}).get("tool_calls") or []) if offer else []
        reply: dict[str, Any] = {"role": "assistant", "content": text}
        if final.get("message", {}).get("thinking"):
            reply["thinking"] = final["message"]["thinking"]
        if calls:
            reply["tool_calls"] = calls
        convo.append(reply)
        if not calls:
            result.text = text
            return result
        for call in calls:
            record = _run_call(toolset, approver, call)
            result.calls.append(record)
            if on_call is not None:
                on_call(record)
            convo.append({"role": "tool", "content": record.result,
                          "tool_name": record.name})
    return result  # not reached: the last round offers no tools


def _one_turn(client: Any, model: str, convo: list[dict[str, Any]], kw: dict[str, Any],
              on_text: Callable[[str], None] | None) -> tuple[str, dict[str, Any]]:
    parts: list[str] = []
    thinking: list[str] = []
    final: dict[str, Any] = {}
    it = client.chat(model, convo, **kw)
    try:
        for part in it:
            msg = part.get("message") or {}
            if msg.get("thinking") and not part.get("done"):
                thinking.append(msg["thinking"])
            if part.get("done"):
                final = part
                break
            text = msg.get("content") or ""
            if text:
                parts.append(text)
                if on_text is not None:
                    on_text(text)
    finally:
        it.close()  # ends the HTTP stream: the daemon cancels the generation
    text = "".join(parts) + ((final.get("message") or {}).get("content") or "")
    if thinking:
        final = {**final, "message": {**(final.get("message") or {}),
                                      "thinking": "".join(thinking)}}
    return text, final


def parse_call(toolset: ToolSet, call: dict[str, Any]
               ) -> tuple[str, dict[str, Any], CallRecord | None]:
    """A call from the model's reply: (tool name, arguments, a record of why it cannot run
    — an unknown tool or arguments that fail the schema — or None when it can)."""
    fn = call.get("function") or {}
    name = str(fn.get("name") or "")
    args = fn.get("arguments")
    args = args if isinstance(args, dict) else {}
    problem = toolset.check(name, fn.get("arguments"))
    if problem is not None:
        return name, args, CallRecord(name, args, f"error: {problem}", "invalid")
    return name, args, None


def _run_call(toolset: ToolSet, approver: Approver, call: dict[str, Any]) -> CallRecord:
    name, args, rejected = parse_call(toolset, call)
    if rejected is not None:
        approver.show(f"tool call rejected: {name}: {rejected.result[7:]}")
        return rejected
    ok, why = approver.decide(toolset.tools[name], args)
    if not ok:
        return CallRecord(name, args, why, "denied")
    record = toolset.call(name, args)
    approver.show(f"tool result: {name} {record.status} in {record.seconds:.2f}s "
                  f"({len(record.result)} characters)")
    return record
