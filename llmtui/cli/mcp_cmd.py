"""``llm mcp``: the MCP servers in the config folder's mcp.json (the format Claude
Desktop, Cursor and LM Studio use), and `test` to start one and list its tools."""

from __future__ import annotations

import typer

from llmtui.cli.output import info, print_json, print_table
from llmtui.errors import InvalidInput

app = typer.Typer(help="Manage MCP servers (mcp.json): list, add, rm, test.",
                  no_args_is_help=True)


@app.command("list")
def list_(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The configured servers."""
    from llmtui.tools.mcp import load_config

    servers = load_config()
    if json_out:
        print_json({name: spec.to_json() for name, spec in servers.items()})
        return
    print_table(None, ["name", "kind", "command or url"],
                [[name, "http" if spec.url else "stdio", spec.describe()]
                 for name, spec in servers.items()])


@app.command("add", context_settings={"allow_extra_args": True,
                                      "ignore_unknown_options": True})
def add(
    name: str = typer.Argument(..., help="The server's name (its tools are NAME.TOOL)."),
    command: list[str] = typer.Argument(..., help="The command and its arguments, or a "
                                        "URL (streamable HTTP)."),
    env: list[str] = typer.Option(None, "--env", "-e", help="KEY=VALUE for the server "
                                  "(repeatable)."),
    header: list[str] = typer.Option(None, "--header", help="'Name: value' for an HTTP "
                                     "server (repeatable)."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace a server of that name."),
) -> None:
    """Add a server: `llm mcp add files npx -y @modelcontextprotocol/server-filesystem .`"""
    from llmtui.tools.mcp import _NAME, ServerSpec, load_config, save_config

    if not _NAME.match(name):
        raise InvalidInput(f"the server name '{name}' must be letters, digits, - or _")
    servers = load_config()
    if name in servers and not force:
        raise InvalidInput(f"there is already a server named '{name}' (--force replaces it)")
    pairs = {}
    for item in env or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--env takes KEY=VALUE, not '{item}'")
        pairs[key] = value
    headers = {}
    for item in header or []:
        key, sep, value = item.partition(":")
        if not sep or not key.strip():
            raise InvalidInput(f"--header takes 'Name: value', not '{item}'")
        headers[key.strip()] = value.strip()
    if command[0].startswith(("http://", "https://")):
        if len(command) > 1:
            raise InvalidInput("a URL server takes no arguments")
        spec = ServerSpec(name, url=command[0], headers=headers)
    else:
        spec = ServerSpec(name, command=command[0], args=command[1:], env=pairs)
    servers[name] = spec
    path = save_config(servers)
    info(f"added '{name}' to {path}")


@app.command("rm")
def rm(name: str = typer.Argument(..., help="The server's name.")) -> None:
    """Remove a server."""
    from llmtui.tools.mcp import load_config, save_config

    servers = load_config()
    if name not in servers:
        raise InvalidInput(f"no MCP server named '{name}' (see: llm mcp list)")
    del servers[name]
    save_config(servers)
    info(f"removed '{name}'")


@app.command("test")
def test(
    server: str = typer.Argument(..., help="A name from mcp.json, or a command in quotes."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Start a server and list its tools (then stop it)."""
    from llmtui.errors import GenerationError
    from llmtui.tools.mcp import McpHost

    with McpHost.from_args([server]) as host:
        listing = host.list_tools()
        if not listing:
            raise GenerationError(f"the MCP server '{server}' did not start")
        ((name, tools),) = listing.items()
        if json_out:
            print_json([{"name": f"{name}.{t.name}", "description": t.description or "",
                         "input_schema": t.input_schema} for t in tools])
            return
        print_table(None, ["tool", "description"],
                    [[f"{name}.{t.name}", (t.description or "").split("\n")[0]]
                     for t in tools])
