"""Allow ``python -m llmtui``."""

from llmtui.cli.entry import main

main()
