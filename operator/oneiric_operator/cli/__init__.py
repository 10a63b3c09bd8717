"""The `oneiric` command line (also installed as the kubectl plugin `kubectl-oneiric`)."""
