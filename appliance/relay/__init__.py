"""The fleet relay: devices hold a revocable device token, the relay holds the API key."""

from __future__ import annotations

from appliance.relay.activity import SessionRecord
from appliance.relay.config import RelayConfig
from appliance.relay.devices import DeviceRegistry, add_device, remove_device
from appliance.relay.server import Relay

__all__ = ["DeviceRegistry", "Relay", "RelayConfig", "SessionRecord", "add_device", "remove_device"]
