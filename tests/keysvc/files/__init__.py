"""Unit tests of keysvc.files."""
