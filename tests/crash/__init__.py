"""Crash tests: real processes killed at every point of the write protocol, then recovered."""
