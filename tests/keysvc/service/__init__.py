"""Unit tests of keysvc.service."""
