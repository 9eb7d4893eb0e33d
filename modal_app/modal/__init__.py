"""Modal backend (placeholder docstring, see step 2)."""
