"""Runnable demonstrations behind ``tether demo``."""
