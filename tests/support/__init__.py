"""Fixtures that tests and benches share and the shipped packages do not need."""
