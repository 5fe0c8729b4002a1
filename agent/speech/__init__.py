"""Local speech models (Whisper STT, Hibari/Piper voices, Silero VAD), loaded once per process, and the pipecat
services that use them."""
