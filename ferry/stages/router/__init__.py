"""Router stage: sends each record to the outputs of the first route whose predicate it matches.

Settings in config.py; it is the parser stage without parsing or transforms (same code, stages/parser/stage.py).
"""

KIND = "router"
