"""Helpers and contract suites for testing conveyor backends and users' ML code."""
