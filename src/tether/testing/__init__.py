"""Helpers for testing code that uses tether: throwaway servers and fixtures."""
