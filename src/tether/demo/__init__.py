"""Runnable demonstrations: ``tether crash-demo``."""
