"""oodml: difficulty-graded out-of-distribution split ladders for deep metric learning."""

__version__ = "0.1.0"
