"""Local backend (placeholder docstring, see step 2)."""
