"""Entities and pure logic shared by every layer: no I/O happens here."""
