"""Voice: audio files and devices, voice activity detection, and the listen/speak/voice
loops shared by the CLI and the TUI. Never imports Textual; numpy, PyAV and sounddevice
are imported inside the functions that need them (the ``voice`` extra)."""
