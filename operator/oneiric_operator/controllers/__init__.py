"""kopf wiring: the thin handlers that feed the runtime, operator settings, login and the run loop."""
