"""Imports every module's tables so Base.metadata is complete (Alembic, tests, schema checks)."""

from omniloop.analytics import models as analytics_models
from omniloop.campaigns import models as campaigns_models
from omniloop.catalog import models as catalog_models
from omniloop.core.db import Base
from omniloop.customers import models as customers_models
from omniloop.imports import models as imports_models  # noqa: F401
from omniloop.loops import models as loops_models
from omniloop.loyalty import models as loyalty_models
from omniloop.messaging import models as messaging_models
from omniloop.orders import models as orders_models
from omniloop.tenancy import models as tenancy_models

__all__ = ["Base", "analytics_models", "campaigns_models", "catalog_models",
           "customers_models", "loops_models", "loyalty_models", "messaging_models",
           "orders_models", "tenancy_models"]
