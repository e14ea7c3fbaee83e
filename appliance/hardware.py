"""Hardware profiles: the pins, LED and audio settings of each supported build, in one table.

A profile is chosen with ``[hardware] profile = "..."``. Its settings are
defaults: any key set in the config file, the environment or on the command
line wins over them. ``hardware/<profile>/`` documents the same builds (wiring
table, parts, ``config.txt`` lines, ALSA configuration, diagram); a test keeps
those documents and this table in agreement.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

HEADER_PINS: Mapping[int, int] = MappingProxyType(
    {
        2: 3,
        3: 5,
        4: 7,
        17: 11,
        27: 13,
        22: 15,
        10: 19,
        9: 21,
        11: 23,
        0: 27,
        5: 29,
        6: 31,
        13: 33,
        19: 35,
        26: 37,
        14: 8,
        15: 10,
        18: 12,
        23: 16,
        24: 18,
        25: 22,
        8: 24,
        7: 26,
        1: 28,
        12: 32,
        16: 36,
        20: 38,
        21: 40,
    }
)
"""Physical pin (1 to 40) on the 40-pin header of each GPIO, by BCM number."""


@dataclass(frozen=True)
class Profile:
    """One supported build.

    Attributes:
        name: The value of ``hardware.profile``.
        title: What the build is, in a few words.
        settings: Config defaults by dotted key (``"button.pin"``), applied
            under whatever the configuration sets itself.
    """

    name: str
    title: str
    settings: Mapping[str, object] = field(default_factory=dict)


PROFILES: Mapping[str, Profile] = MappingProxyType(
    {
        profile.name: profile
        for profile in (
            Profile(
                "generic",
                "USB microphone, USB speaker, a button on GPIO17 and an LED on GPIO27",
                {
                    "button.backend": "gpio",
                    "button.pin": 17,
                    "button.pull": "up",
                    "button.active": "low",
                    "led.kind": "pwm",
                    "led.pin": 27,
                },
            ),
            Profile(
                "respeaker-2mic",
                "Seeed ReSpeaker 2-Mics Pi HAT (v1, WM8960): its button on GPIO17",
                {
                    "button.backend": "gpio",
                    "button.pin": 17,
                    "button.pull": "up",
                    "button.active": "low",
                    # The on-board APA102 LEDs need SPI; an LED on the Grove
                    # port's GPIO12 is the supported indicator.
                    "led.kind": "pwm",
                    "led.pin": 12,
                    # The codec runs at 48 kHz; soxr converts, not ALSA's plug.
                    "audio.input_rate_hz": 48_000,
                    "audio.output_rate_hz": 48_000,
                },
            ),
            Profile(
                "aiy-voice",
                "Google AIY Voice Kit v1 (Voice HAT): arcade button on GPIO23, its LED on GPIO25",
                {
                    "button.backend": "gpio",
                    "button.pin": 23,
                    "button.pull": "up",
                    "button.active": "low",
                    "led.kind": "pwm",
                    "led.pin": 25,
                    "audio.input_rate_hz": 48_000,
                    "audio.output_rate_hz": 48_000,
                },
            ),
            Profile(
                "desktop",
                "a laptop or desktop: Enter on the keyboard is the button, no LED",
                {"button.backend": "keyboard", "led.kind": "none"},
            ),
        )
    }
)
"""Every profile, by name."""

DEFAULT_PROFILE = "generic"
"""The profile used when the configuration names none."""
