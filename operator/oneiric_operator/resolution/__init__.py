"""Resolution: the pure, deterministic engine that picks a winner per slot and explains why.

Never imports kopf, a Kubernetes client or aiohttp: the operator, the CLI and the benchmarks run
the same code.
"""
