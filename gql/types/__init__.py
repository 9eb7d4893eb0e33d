"""Strawberry types, one domain per module; they convert from resolver results."""
