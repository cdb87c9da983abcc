"""Benchmarks. Not part of the service: nothing under project/ or the apps imports them."""
