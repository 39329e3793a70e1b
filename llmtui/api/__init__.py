"""The daemon's HTTP API: Ollama's /api/*, extensions under /api/x/*, one ASGI app."""
