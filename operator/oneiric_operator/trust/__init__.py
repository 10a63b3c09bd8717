"""Manifest format, signing and verification. Pure: no kopf, no Kubernetes client, no network.

Entry point for callers: `verification.verify_manifest(raw, detached_signature=..., policy=..., now=...)`.
"""
