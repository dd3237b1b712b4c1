"""One name -> object mapping per kind of thing (models, engines, optimizers, SVM backends...).

Modelled on torchvision's ``register_model``/``get_model``: duplicate names are refused and an
unknown name is a one-line ``UsageError`` listing the choices. An entry may be given as
``"module:attribute"`` and is imported on first use, so the names (the CLI's choices, the
configs' validation) are known without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Generic, TypeVar

from perfstudy.errors import UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, what: str, lazy: dict[str, str] | None = None):
        self.what = what
        self._items: dict[str, T | str] = dict(lazy or {})

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
            item = self._items[name]
        except KeyError:
            raise UsageError(
                f"unknown {self.what} {name!r}; choose from: {', '.join(self.names())}"
            ) from None
        if isinstance(item, str):  # "module:attribute", imported now
            module, _, attr = item.partition(":")
            item = self._items[name] = getattr(importlib.import_module(module), attr)
        return item

    def check(self, name: str) -> None:
        """A ``UsageError`` unless ``name`` is registered (nothing is imported)."""
        if name not in self._items:
            self.get(name)

    def names(self) -> list[str]:
        return list(self._items)
