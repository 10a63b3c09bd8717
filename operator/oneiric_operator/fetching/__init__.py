"""Fetching remote manifests: bounded HTTP, URL allowlist, retries with jitter, circuit breaker, digest
-named disk cache. May use aiohttp; never kopf. Entry point: `fetch.fetch_manifest`."""
