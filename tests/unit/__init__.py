"""Focused unit tests: one module of the product at a time, real database and bus where it
touches them (the ``app`` fixture), no server process and no sandbox."""
