"""Oneiric Operator: declarative, live, explainable component selection for Kubernetes."""

__version__ = "0.1.0"
