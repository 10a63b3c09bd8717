"""From a RemoteManifest and its namespace's StackPolicy to Candidates. Pure: no kopf, no client.

`keys` turns trustedKeys (inline, Secret, ConfigMap) into a TrustPolicy, with readers injected;
`verifying` is the verify step the reconciler and the webhook share: the trust context (keys, size
limit, trust policy) and the decision on manifest bytes (Enforce or Warn) with the one shared cache;
`fetch_step` is what a pass's fetch ends with;
`materialize` turns a verified manifest into Candidate bodies and plans the writes;
`status` computes the RemoteManifest status and the next attempt.
"""
