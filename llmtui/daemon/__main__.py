from llmtui.daemon.server import main

main()
