"""ralph-loop: run a hardening prompt against a git repository in a Ralph loop."""

__version__ = "0.1.0"
