"""Turning a database driver's errors into keysvc's tree, at the store's boundary."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from keysvc.errors import KeysvcError

P = ParamSpec("P")
R = TypeVar("R")
E = TypeVar("E", bound=Exception)


def translating(
    driver_error: type[E], translate: Callable[[E], KeysvcError]
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Return a decorator that re-raises ``driver_error`` as ``translate(exc)``, chained ``from exc``."""

    def decorate(method: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(method)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return method(*args, **kwargs)
            except driver_error as exc:
                raise translate(exc) from exc

        return wrapper

    return decorate
