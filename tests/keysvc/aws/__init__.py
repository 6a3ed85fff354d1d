"""Unit tests of keysvc.aws."""
