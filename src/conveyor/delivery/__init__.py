"""Continuous delivery: the CD checks, staged promotion with approval, canary, containers.

A version reaches an alias only through its deployment policy's gates; every
move is an audited event in the registry that one command reverses.
"""
