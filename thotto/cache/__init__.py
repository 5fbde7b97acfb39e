"""The cache actor: memory (L1) in front of an optional Redis (L2); see :mod:`thotto.cache.core`.

    cache = Cache(CacheConfig.from_settings(settings), sidecar=sidecar, breakers=breakers)
    # in the supervision tree: ChildSpec("cache", cache.run, wants_context=True)
    rules = await cache.get_or_load(f"rules:{sub}", fetch_rules, ttl_class="community",
                                    tags=[f"sub:{sub}"])
"""

from thotto.cache.core import DEFAULT_TTL_CLASSES, Cache, CacheConfig, CacheStats
from thotto.cache.local import LocalCache

__all__ = ["DEFAULT_TTL_CLASSES", "Cache", "CacheConfig", "CacheStats", "LocalCache"]
