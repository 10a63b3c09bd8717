"""The RemoteManifest reconciler, next to the slot runtime: one worker per manifest that reads or fetches
its bytes, verifies them, writes its Candidates and its status. Never imports kopf:
`controllers/remote_manifests.py` feeds it watch events.

`reconciler` keeps the newest body of each manifest and its worker; `worker` runs the passes;
`candidates` writes and withdraws the materialized Candidates; `recording` writes the status and posts
the events; `high_water` keeps the publishers' anti-rollback marks; `key_objects` reads key objects.
"""
