"""Unit tests of keysvc.http."""
