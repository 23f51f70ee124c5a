"""conveyor: MLOps level 2 in one package."""

__version__ = "0.1.0"
