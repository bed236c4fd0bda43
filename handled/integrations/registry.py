"""The integrations handled knows: every module in ``definitions`` that defines INTEGRATION."""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from handled.errors import NotFound
from handled.integrations import definitions
from handled.integrations.base import Integration


class UnknownIntegration(NotFound):
    """No integration has this id; the message lists the ones there are."""


@lru_cache(maxsize=1)
def _registry() -> dict[str, Integration]:
    found: dict[str, Integration] = {}
    for module_info in sorted(pkgutil.iter_modules(definitions.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{definitions.__name__}.{module_info.name}")
        integration = getattr(module, "INTEGRATION", None)
        if integration is None:
            continue
        if integration.id in found:
            raise RuntimeError(f"two integrations share the id {integration.id!r}")
        found[integration.id] = integration
    return found


def all_integrations() -> list[Integration]:
    """Every integration, sorted by id."""
    return [_registry()[key] for key in sorted(_registry())]


def get_integration(integration_id: str) -> Integration:
    try:
        return _registry()[integration_id]
    except KeyError:
        known = ", ".join(sorted(_registry()))
        raise UnknownIntegration(f"There is no integration {integration_id!r}; known: {known}.") from None
