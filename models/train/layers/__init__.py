"""Pooling layers; `create_pool(name)` picks one by name and fails fast on an unknown one."""
from .gem import GeM, gem
from .pool import create_pool

__all__ = ["GeM", "gem", "create_pool"]
