"""Tools for the chat, the pipe commands and the SDK: one headless tool loop.

``ToolSet`` holds the tools (built-in ones, Python functions, MCP servers' tools);
``run_loop`` offers them to a model through the daemon's /api/chat, asks the ``Approver``
before each call, runs it and feeds the result back, for a bounded number of rounds.
Nothing here imports Textual: the TUI, ``llm run`` and ``llmtui.Client`` share it.
"""

from __future__ import annotations

from llmtui.tools.approval import Approver
from llmtui.tools.core import CallRecord, Tool, ToolSet
from llmtui.tools.functions import function_tool, load_functions
from llmtui.tools.loop import LoopResult, run_loop

__all__ = ["Approver", "CallRecord", "LoopResult", "Tool", "ToolSet", "function_tool",
           "load_functions", "run_loop"]


def toolset_of(tools: object) -> ToolSet:
    """A ToolSet from what an SDK user passes: a ToolSet, or a list of Python functions,
    Tool objects and built-in group names ("fs", "shell")."""
    from llmtui.errors import InvalidInput
    from llmtui.tools.builtin import builtin_tools

    if isinstance(tools, ToolSet):
        return tools
    out = ToolSet()
    items = tools if isinstance(tools, list | tuple) else [tools]
    for item in items:
        if isinstance(item, Tool):
            out.add(item)
        elif isinstance(item, str):
            out.extend(builtin_tools(item))
        elif callable(item):
            out.add(function_tool(item))
        else:
            raise InvalidInput(f"a tool must be a function, a Tool or 'fs'/'shell', "
                               f"not {item!r}")
    return out


def approver_of(approve: object) -> Approver:
    """The SDK's ``approve``: True runs every call (the functions are the caller's own)
    except the built-in shell tool, which is never run unasked: only a function decides
    for it. False refuses every call, and a function ``(name, arguments) -> bool`` (or
    "once", "session", "deny") decides each."""
    from llmtui.tools.approval import DENY, ONCE

    if approve is True:
        return Approver(yes=True, show=lambda line: None)
    if approve is False or approve is None:
        return Approver(show=lambda line: None)
    if not callable(approve):
        raise TypeError("approve must be True, False or a function (name, arguments)")
    decide = approve

    def ask(tool: Tool, arguments: dict[str, object]) -> str:
        answer = decide(tool.name, arguments)
        if isinstance(answer, str):
            return answer
        return ONCE if answer else DENY

    return Approver(ask=ask, show=lambda line: None)
