"""The operator's moving parts between kopf and the pure engine: the object store, the slot scheduler,
the per-slot reconcile, status writers and events. Never imports kopf: handlers feed it."""
