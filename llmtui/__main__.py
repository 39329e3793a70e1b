"""Allow ``python -m llmtui``."""

from llmtui.cli.app import main

main()
