"""From a RemoteManifest and its namespace's StackPolicy to Candidates. Pure: no kopf, no client.

`keys` turns trustedKeys (inline, Secret, ConfigMap) into a TrustPolicy, with readers injected;
`verifying` decides on manifest bytes (Enforce or Warn) with the one shared VerificationCache;
`materialize` turns a verified manifest into Candidate bodies and plans the writes;
`status` computes the RemoteManifest status and the next attempt.
"""
