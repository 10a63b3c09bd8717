"""Validating admission, served by the operator through kopf.

`decisions` (pure) says what to do with a Candidate; `configuration` (pure) builds the
ValidatingWebhookConfiguration; `certificates` makes a self-signed CA and serving certificate;
`admission` registers the kopf handlers and the server that keeps the configuration in the cluster.
"""
