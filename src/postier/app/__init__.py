"""Composition root: configuration → objects → one running server (``application.py``), and the
process around it: signals, reloads, the event loop (``serve.py``)."""

from postier.app.application import Application, Role, Service
from postier.app.serve import run_loop, serve

__all__ = ["Application", "Role", "Service", "run_loop", "serve"]
