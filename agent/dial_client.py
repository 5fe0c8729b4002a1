"""`voice-agent dial`: ask a running server to place an outbound call (`POST /calls`, with OPERATOR_TOKEN)."""

from __future__ import annotations

import httpx

from agent.settings import Settings


async def request_dial(settings: Settings, server: str, to: str, carrier: str, greeting: str | None) -> int:
    """Post the dial request; print what the server answered. 0 when the call was placed."""
    body = {"to": to, "carrier": carrier} | ({"greeting": greeting} if greeting is not None else {})
    token = settings.operator_token.get_secret_value()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(server.rstrip("/") + "/calls", json=body, headers=headers)
    except httpx.HTTPError as e:
        raise RuntimeError(f"cannot reach {server}: {type(e).__name__}") from None
    try:
        answer = response.json()
    except ValueError:
        answer = {"error": response.text[:200]}
    if response.status_code != 201:
        print(f"not placed ({response.status_code}): {answer.get('error', answer)}")
        return 1
    print(f"{answer['carrier']} is calling {answer['to']} (dial {answer['dial_id']})")
    return 0
