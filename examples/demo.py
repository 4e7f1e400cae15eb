"""Placeholder demo: a small instrumented loop against a local moto server."""
