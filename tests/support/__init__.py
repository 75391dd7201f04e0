"""Helpers shared by the unit, functional and integration tests."""
