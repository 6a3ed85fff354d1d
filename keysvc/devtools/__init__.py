"""Development tools, apart from the product: ``keysvc demo`` and the local bucket emulator.

Nothing in the product imports this package; only ``keysvc demo`` and the tests do.
"""

__all__: list[str] = []
