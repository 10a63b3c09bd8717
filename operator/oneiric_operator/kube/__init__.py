"""A small async Kubernetes API client on aiohttp: credentials, requests, paths, events.

Why not the official client: it is synchronous (or, in kubernetes_asyncio, a large generated
package with a model class per kind), while the operator only needs JSON in, JSON out over a handful of
paths. kopf already depends on aiohttp; this layer reuses it, keeps memory per object low and lets
tests count every request the operator makes.
"""
