"""The ``llm`` command: Typer app, one module per command group."""
