"""Unit tests of keysvc.wire."""
