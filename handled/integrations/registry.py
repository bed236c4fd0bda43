"""The integrations handled knows: every module in ``definitions`` that defines INTEGRATION."""

from __future__ import annotations

import importlib
import pkgutil
from datetime import timedelta
from functools import lru_cache

from handled.errors import NotFound
from handled.integrations import definitions
from handled.integrations.base import Integration


# How long a source file stays current before the home page flags it as due for a
# newer one: roughly how often its publisher puts out a new edition, plus slack.
# Every integration needs an entry (tests/test_home_page.py checks), so a new kind of
# file makes its author pick one. A per-origin integration (one file per origin, upsert
# mode) is measured by its oldest origin's latest import: one forgotten origin is stale.
REFRESH_EVERY: dict[str, timedelta] = {
    # Census Gazetteer: one release a year (each summer).
    "gaz-zcta": timedelta(days=400),
    # SimpleMaps US ZIP database: the free edition is refreshed a few times a year;
    # ZIP boundaries and populations move slowly, so yearly is the honest minimum.
    "us-zips": timedelta(days=365),
    # UPS zone charts: republished with the yearly rate change (late December).
    "ups-zones": timedelta(days=400),
    # UPS ground time-in-transit: changes with UPS's network, any month.
    "ups-ground-service": timedelta(days=31),
    # USPS 3-digit service standards directory: republished about monthly.
    "usps-3d-base": timedelta(days=31),
}


def refresh_every(integration_id: str) -> timedelta:
    """How old its last import may be before the home page flags it (REFRESH_EVERY)."""
    return REFRESH_EVERY[integration_id]


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
