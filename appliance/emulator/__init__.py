"""A local server speaking the OpenAI Realtime GA protocol strictly, with fault injection."""

from __future__ import annotations

from appliance.emulator.server import Connection, Emulator, Faults, Observer, run_emulator

__all__ = ["Connection", "Emulator", "Faults", "Observer", "run_emulator"]
