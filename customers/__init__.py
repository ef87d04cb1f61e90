"""Shared ground of the customers service: settings, event shapes, identifiers."""
