"""Unit tests of keysvc.gcs."""
