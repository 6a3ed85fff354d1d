"""Versioned schema migrations, one module per dialect (``sqlite`` and ``postgres``, kept in step).

Each dialect lists :class:`~keysvc.store.interface.Migration` objects in version order. Versions are
append-only: a released migration is never edited, a new one is added. The SQL is kept portable where
cheap (``ON CONFLICT``, partial indexes and ``CHECK`` constraints work in both dialects); only column
types differ.
"""
