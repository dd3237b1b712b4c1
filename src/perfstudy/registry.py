"""One name -> object mapping per kind of thing (models, datasets, engines, SVM backends...).

Modelled on torchvision's ``register_model``/``get_model``: duplicate names are refused and an
unknown name is a one-line ``UsageError`` listing the choices, so the CLI and the tests can both
be driven from the registry.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from perfstudy.errors import UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, what: str):
        self.what = what
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None):
        """``reg.register("x", obj)`` or as a decorator ``@reg.register("x")``."""

        def add(o: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.what} {name!r} is registered twice")
            self._items[name] = o
            return o

        return add(obj) if obj is not None else add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UsageError(
                f"unknown {self.what} {name!r}; choose from: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

