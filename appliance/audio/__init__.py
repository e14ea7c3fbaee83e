"""Audio: PCM helpers, WAV files, the microphone and speaker adapters, earcons."""
