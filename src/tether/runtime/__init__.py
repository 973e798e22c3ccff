"""Durable execution: runs, run contexts, tools and the write protocol."""
