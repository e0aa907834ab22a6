"""The query API that the CLI and UI use (app.py)."""
