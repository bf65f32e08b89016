"""Cluster set-up: a one-shot TLS certificate authority, per-party bundles and the shared roster."""
