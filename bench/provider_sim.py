"""The provider simulator moved into the package (`agent/llm/simulator.py`) so that `voice-agent bench-llm` runs
from an installed wheel; this name stays for the benchmarks and tests that import it from here."""

from agent.llm.simulator import DEFAULT_ANSWER, ProviderSim

__all__ = ["DEFAULT_ANSWER", "ProviderSim"]
