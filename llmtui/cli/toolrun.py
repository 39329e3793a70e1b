"""`llm run` / `llm ask` with tools (--tools, --functions, --mcp): the options they share
and the step that runs the headless tool loop (llmtui/tools/) and prints its answer."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import typer

from llmtui.cli.common import GenOptions, Quiet, emit_result, silence_stdout, stats_of, write
from llmtui.errors import InvalidInput


@dataclass
class ToolArgs:
    """The tool options of one command."""

    builtin: str | None = None
    functions: list[str] = field(default_factory=list)
    mcp: list[str] = field(default_factory=list)
    choice: str | None = None
    allow: list[str] = field(default_factory=list)
    yes: bool = False
    rounds: int = 5

    def wanted(self) -> bool:
        return bool(self.builtin or self.functions or self.mcp)

    def check(self) -> None:
        if not self.wanted() and (self.choice or self.allow or self.yes):
            raise InvalidInput("--tool-choice, --allow-tool and --yes need tools: pass "
                               "--tools fs,shell, --functions FILE or --mcp COMMAND")
        if not 0 <= self.rounds <= 50:
            raise InvalidInput("--tool-rounds must be from 0 to 50")


@contextlib.contextmanager
def open_tools(args: ToolArgs) -> Iterator[Any]:
    """The ToolSet for these options; MCP servers run while the block does."""
    from llmtui.tools import ToolSet, load_functions
    from llmtui.tools.builtin import builtin_tools

    toolset = ToolSet()
    if args.builtin:
        toolset.extend(builtin_tools(args.builtin))
    for source in args.functions:
        toolset.extend(load_functions(source))
    with contextlib.ExitStack() as stack:
        if args.mcp:
            from llmtui.tools.mcp import McpHost

            host = stack.enter_context(McpHost.from_args(args.mcp))
            toolset.extend(host.tools())
        unknown = [n for n in args.allow if n not in toolset.names()]
        if unknown:
            raise InvalidInput(f"--allow-tool {unknown[0]}: there is no such tool (the "
                               f"tools are: {', '.join(toolset.names())})")
        yield toolset


def run_with_tools(opts: GenOptions, args: ToolArgs,
                   messages: list[dict[str, Any]]) -> None:
    """Run the tool loop for a one-shot prompt: the answer on stdout, each call and its
    approval on stderr; with --json, one object with the text, the calls and the stats."""
    from llmtui.cli.session import connect
    from llmtui.tools import Approver, run_loop
    from llmtui.tools.approval import terminal_ask

    if opts.system:
        messages = [{"role": "system", "content": opts.system}, *messages]
    kw: dict[str, Any] = {"options": opts.options, "truncate": opts.truncate}
    if opts.keep_alive is not None:
        kw["keep_alive"] = opts.keep_alive
    if opts.think is not None:
        kw["think"] = opts.think
    echo = not opts.json_out
    with open_tools(args) as toolset, connect() as client:
        approver = Approver(yes=args.yes, allow=args.allow, ask=terminal_ask())
        try:
            result = run_loop(client, opts.model, messages, toolset, approver=approver,
                              tool_choice=args.choice, max_rounds=args.rounds,
                              on_text=write if echo else None, **kw)
            if echo and result.text and not result.text.endswith("\n"):
                write("\n")
            if opts.json_out:
                write(json.dumps({"model": opts.model, "text": result.text,
                                  "calls": [c.to_dict() for c in result.calls],
                                  "stats": stats_of(result.final)}, ensure_ascii=False)
                      + "\n")
            elif opts.verbose:
                emit_result(opts, result.text, result.final)
        except Quiet:
            silence_stdout()


# -- option declarations ----------------------------------------------------------------------

ToolsOpt = typer.Option(None, "--tools", help="Built-in tools to offer the model: fs (read "
                        "and list files below this folder), shell (run a command; asks "
                        "first every time), plugins (installed plugins' tools); "
                        "comma-separated.")
FunctionsOpt = typer.Option(None, "--functions", help="A Python file (or code) whose "
                            "functions become tools: type hints give the arguments, the "
                            "docstring the description; repeatable.")
McpOpt = typer.Option(None, "--mcp", help="An MCP server command (stdio) whose tools to "
                      "offer, e.g. 'python server.py'; repeatable.")
ToolChoiceOpt = typer.Option(None, "--tool-choice", help="auto (default), required (the "
                             "model must call a tool) or a tool's name (it must call that "
                             "one); enforced with a grammar.")
AllowToolOpt = typer.Option(None, "--allow-tool", help="Run this tool without asking "
                            "(repeatable).")
YesOpt = typer.Option(False, "--yes", "-y", help="Run tool calls without asking (the shell "
                      "tool still asks unless --allow-tool run_command).")
RoundsOpt = typer.Option(5, "--tool-rounds", help="Rounds of tool calls before the model "
                         "must answer.")
