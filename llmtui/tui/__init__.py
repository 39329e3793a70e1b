"""The full-screen chat (Textual). Only this package imports textual."""
