"""Journal stores: the contract and its implementations."""

from tether.store.base import Durability, RunInfo, Store, WorkerInfo, WorkQueue
from tether.store.memory import MemoryStore
from tether.store.sqlite import SQLiteStore

__all__ = ["Durability", "MemoryStore", "RunInfo", "SQLiteStore", "Store", "WorkQueue",
           "WorkerInfo"]
