"""The base every params section derives from (defined in train/sections.py, where the model families' sections
derive from it too)."""
from train.sections import Section

__all__ = ["Section"]
