"""Configuration: typed models (model.py) and the YAML loader that names bad keys (load.py)."""

from ferry.config.load import load
from ferry.config.model import FerryConfig

__all__ = ["FerryConfig", "load"]
