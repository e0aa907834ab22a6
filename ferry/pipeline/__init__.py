"""The pipeline as data: topics and stage instances declared in config (model.py), the enterprise map
that ships as the default (default.py), and the checks `ferry config check` runs over the graph (graph.py).
"""
