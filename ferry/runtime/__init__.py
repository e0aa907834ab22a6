"""Running ferry: the supervisor, the role processes, and the one runner every stage uses.

See docs/ARCHITECTURE.md for how the processes fit together.
"""
