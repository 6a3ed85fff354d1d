"""Unit tests of keysvc.store."""
