"""The engine: one worker subprocess per loaded model, managed by EngineManager."""
