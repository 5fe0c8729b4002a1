"""The provider chain: the primary provider and its fallbacks, in the order a turn should try them."""

from __future__ import annotations

from collections.abc import Sequence

from agent.llm.client import ChatCompletionClient, ProviderError


class ProviderChain:
    """The configured providers, primary first; `available()` is the order a turn tries them in."""

    def __init__(self, clients: Sequence[ChatCompletionClient]) -> None:
        self.clients = list(clients)

    def available(self) -> list[ChatCompletionClient]:
        return list(self.clients)

    def failed(self, client: ChatCompletionClient, error: ProviderError) -> None:
        """A provider failed a request (the chain may rest it)."""
