"""The API of the operator: pydantic models for the four kinds, the single source of truth.

The CRDs in `crds/` are generated from these models (`python -m oneiric_operator.api.crdgen`).
Python names are snake_case; the Kubernetes JSON is camelCase (`model_dump(by_alias=True)`).
Import from the module that holds a name (`api.candidate`, `api.component`, `api.resources`, ...):
the package re-exports nothing, so there is one way to spell each import.
"""
