"""EarlyExp/WebShop-v0: a WebShop clone with a generated catalog, BM25 search and a web site.

``WebShopEnv`` is the Gymnasium env; ``load_catalog`` builds or loads a cached catalog;
``earlyexp.envs.webshop.site:main`` serves the same engine as a web site.
"""

from earlyexp.envs.webshop.catalog import Catalog, load_catalog
from earlyexp.envs.webshop.env import WebShopEnv
from earlyexp.envs.webshop.goals import Goal
from earlyexp.envs.webshop.reward import score_purchase, webshop_score

__all__ = ["Catalog", "Goal", "WebShopEnv", "load_catalog", "score_purchase", "webshop_score"]
