"""The background daemon: server, lifecycle (status file, lock, autostart) and client."""
