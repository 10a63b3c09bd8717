"""The example shop: a small aiohttp web application whose cache is chosen by Oneiric Operator."""
