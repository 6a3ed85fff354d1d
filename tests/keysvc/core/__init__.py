"""Unit tests of keysvc.core."""
