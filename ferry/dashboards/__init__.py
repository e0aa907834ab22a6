"""Dashboards as code: YAML files of panels and queries (docs/dashboards.md), validated and reloaded on change.

model.py is the file format, load.py reads and checks a file, folder.py keeps the folder current."""
