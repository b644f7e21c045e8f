"""A module-level object built on first use, so that importing a module never reads settings or connects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")


class LazyProxy(Generic[T]):
    """Forwards attribute access to `factory()`, called once, on first use."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._instance: T | None = None

    def _get(self) -> T:
        if self._instance is None:
            self._instance = self._factory()
        return self._instance

    def reset(self) -> None:
        """Forget the instance (tests, or after settings changed)."""
        self._instance = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)


def lazy(factory: Callable[[], T]) -> T:
    """A `LazyProxy` of `factory`, typed as the instance it stands for.

    The proxy forwards every attribute, so callers use it as they would the instance and type checkers
    should see that type; only `isinstance` and the proxy's own `reset` tell the two apart.
    """
    return cast(T, LazyProxy(factory))
