"""The shop's products: the slow backing store the cache sits in front of."""

from __future__ import annotations

import asyncio

PRODUCTS: dict[str, dict[str, object]] = {
    "tea": {"name": "Green tea, 100 g", "price": 6.5},
    "mug": {"name": "Stoneware mug", "price": 12.0},
    "pot": {"name": "Cast-iron teapot", "price": 48.0},
    "cup": {"name": "Porcelain cup", "price": 9.0},
}
LOOKUP_SECONDS = 0.02


async def lookup(sku: str) -> dict[str, object] | None:
    """What a database round trip would cost: the reason the shop caches."""
    await asyncio.sleep(LOOKUP_SECONDS)
    product = PRODUCTS.get(sku)
    return None if product is None else {"sku": sku, **product}
