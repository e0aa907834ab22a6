"""The `ferry` command line (main.py), its API client (client.py) and terminal rendering (render.py)."""
