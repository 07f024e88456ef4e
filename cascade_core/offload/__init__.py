"""Model placement and offloading: :class:`ModelManager` (policies ``keep`` / ``model`` / ``block`` / ``auto``).

See :mod:`.manager` for budgets and accounting, :mod:`.streaming` for block streaming, :mod:`.tensors` for the
exception-safe transfers.
"""
from .manager import MemoryBudgetError, ModelManager
from .policy import GIB, POLICIES, choose_modes
from .report import Eviction, MemoryReport, ModelPlacement
from .streaming import BlockStreamer, split_units

__all__ = ["ModelManager", "MemoryBudgetError", "MemoryReport", "ModelPlacement", "Eviction", "BlockStreamer",
           "split_units", "choose_modes", "POLICIES", "GIB"]
