"""Talking to the API server: credentials (loaded by the official `kubernetes` package, renewed when
they expire), and a small async request layer on aiohttp (JSON in, JSON out, bounded and counted).

The split, and why requests do not go through the official client: docs/architecture.md.
"""
