"""Backends run models inside worker processes; chosen by the model's format."""
