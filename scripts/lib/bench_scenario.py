"""The bench's scenario: the scripted turns, the microphone WAV, and where connections drop.

Times are seconds on the script clock, which starts when the client is ready (the
daemon: ``READY=1``, devices open; the baseline: its microphone stream started).
Every third turn (3, 6, 9, ...) is pressed while the previous reply still plays:
a barge-in. Turns 4, 7, 10 (at most ``drops`` of them; turn 1 when there are fewer
than four turns) lose their connection 0.3 s in, by the emulator's
``drop_after_appends`` fault.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from appliance.audio import pcm
from appliance.audio.wav import read_wav_pcm24k, write_wav

FIRST_PRESS_S = 0.5
"""The first press, after the script clock starts (seconds)."""
HOLDS_S = (2.9, 2.1, 2.5)
"""How long turn k is held (seconds): ``HOLDS_S[k % 3]``, give or take ``PHASE_SPREAD_S``;
drop turns get the longest."""
REPLY_S = 1.2
"""The emulator's ``tone`` reply (seconds)."""
GAP_S = 0.6
"""A normal press comes this long after the previous reply ended (seconds)."""
BARGE_IN_AFTER_S = 0.6
"""A barge-in press comes this long into the previous reply (seconds)."""
DROP_INTO_TURN_S = 0.3
"""A drop turn loses its connection this long after its press (seconds)."""
SPEECH_LEAD_S = 0.1
"""Speech starts this long after the press and ends as long before the release (seconds)."""
PHASE_SPREAD_S = 0.1
"""Presses and releases are moved by up to this much, a different amount each (seconds).

The amounts are spread evenly (golden-ratio steps), so the button meets the
speakers' 20 and 50 ms periods at every phase rather than at one: a scenario on
round times would hand every reply to the speaker at the same point of its period.
"""
TAIL_S = 3.0
"""Silence in the microphone after the last release (seconds)."""
APPEND_S = pcm.PERIOD_MS / 1000
"""The daemon appends each captured period while a session is ready (seconds)."""
RESEND_S = 1.0
"""Audio held for a new session is resent in appends of this much (``turn.RESEND_CHUNK_BYTES``)."""


@dataclass(frozen=True)
class Turn:
    """One scripted turn.

    Attributes:
        number: 1-based.
        press_s: the press, on the script clock (seconds).
        release_s: the release, on the script clock (seconds).
        barge_in: pressed while the previous turn's reply plays.
        drop: its connection is dropped ``DROP_INTO_TURN_S`` after the press.
    """

    number: int
    press_s: float
    release_s: float
    barge_in: bool
    drop: bool

    @property
    def drop_s(self) -> float:
        """When the drop is due, on the script clock (seconds)."""
        return self.press_s + DROP_INTO_TURN_S


@dataclass(frozen=True)
class Scenario:
    """The turns of one run, the same for the daemon and the baseline."""

    turns: tuple[Turn, ...]

    @classmethod
    def build(cls, count: int, *, drops: int = 3) -> Scenario:
        """``count`` turns (at least 2) with barge-ins and at most ``drops`` dropped connections."""
        if count < 2:
            raise ValueError("the bench needs at least 2 turns (the second barges in)")
        barge = {k for k in range(2, count + 1) if k % 3 == 0} or {2}
        drop_turns = sorted(k for k in range(4, count + 1) if k % 3 == 1) or [1]
        dropped = set(drop_turns[:drops])
        turns: list[Turn] = []
        press = FIRST_PRESS_S
        for k in range(1, count + 1):
            hold = HOLDS_S[k % 3] if k not in dropped else max(HOLDS_S)
            hold += _phase(2 * k) - _phase(2 * k - 1)
            at = round(press + _phase(2 * k - 1), 4)
            turns.append(Turn(k, at, round(at + hold, 4), k in barge, k in dropped))
            after = BARGE_IN_AFTER_S if k + 1 in barge else REPLY_S + GAP_S
            press = press + hold + after
        return cls(tuple(turns))

    @property
    def script(self) -> list[tuple[float, str]]:
        """The button script: ``(seconds, "press" | "release")`` pairs."""
        steps: list[tuple[float, str]] = []
        for turn in self.turns:
            steps += [(turn.press_s, "press"), (turn.release_s, "release")]
        return steps

    @property
    def end_s(self) -> float:
        """When the last reply has played, on the script clock (seconds)."""
        return self.turns[-1].release_s + REPLY_S

    @property
    def microphone_s(self) -> float:
        """The length of the microphone WAV (seconds)."""
        return self.turns[-1].release_s + TAIL_S

    @property
    def barge_ins(self) -> list[Turn]:
        """The turns pressed during the previous reply."""
        return [turn for turn in self.turns if turn.barge_in]

    @property
    def drops(self) -> list[Turn]:
        """The turns whose connection is dropped."""
        return [turn for turn in self.turns if turn.drop]

    def write_microphone(self, speech_wav: Path, out: Path) -> None:
        """Write the microphone: silence, with speech over each turn's hold (24 kHz WAV).

        Args:
            speech_wav: the speech to say (any WAV); it is cut to fit each turn.
            out: the WAV to write.
        """
        speech = read_wav_pcm24k(speech_wav)
        audio = bytearray(pcm.ms_to_bytes(self.microphone_s * 1000))
        for turn in self.turns:
            start = pcm.ms_to_bytes((turn.press_s + SPEECH_LEAD_S) * 1000)
            length = pcm.ms_to_bytes((turn.release_s - turn.press_s - 2 * SPEECH_LEAD_S) * 1000)
            said = speech[: min(length, len(speech))]
            audio[start : start + len(said)] = said
        write_wav(out, bytes(audio))

    def drop_after_appends(self, now_s: float) -> int | None:
        """The ``drop_after_appends`` of a connection opened at ``now_s``, or None.

        Counts the appends the daemon will send on it until the next drop is due:
        one per period of a turn's live audio, and the audio of a turn already
        under way resent in one-second appends. Off by a few appends at worst,
        which moves the drop by tens of milliseconds within its turn.
        """
        upcoming = [turn for turn in self.drops if turn.drop_s > now_s + 0.05]
        if not upcoming:
            return None
        until = upcoming[0].drop_s
        count = 0
        for turn in self.turns:
            if turn.release_s <= now_s or turn.press_s >= until:
                continue
            start = max(turn.press_s, now_s)
            if turn.press_s < now_s:
                count += math.ceil((now_s - turn.press_s) / RESEND_S)
            count += round((min(turn.release_s, until) - start) / APPEND_S)
        return max(1, count)


def _phase(n: int) -> float:
    """The n-th offset (seconds, 0 to ``PHASE_SPREAD_S``): golden-ratio steps, evenly spread."""
    return PHASE_SPREAD_S * ((n * 0.6180339887) % 1.0)
