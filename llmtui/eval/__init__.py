"""Measuring models: perplexity over a text (any backend) and the `llm bench` runs."""
