"""A push-to-talk voice appliance speaking the OpenAI Realtime API."""

__version__ = "0.1.0"
