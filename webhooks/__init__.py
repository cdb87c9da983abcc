"""Webhooks: signed notifications of finished jobs to an account's endpoints."""
