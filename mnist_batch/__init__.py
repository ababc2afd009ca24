"""Batch classification of handwritten digit images."""
__version__ = "0.1.0"
