"""TwiML, and Telnyx's TeXML which speaks the same verbs: the documents that connect a call to our media stream,
reject it as busy, put it through to a person, or leave a message and hang up. Every value is XML-escaped."""

from __future__ import annotations

from collections.abc import Mapping
from xml.sax.saxutils import escape, quoteattr

XML_HEADER = '<?xml version="1.0" encoding="UTF-8"?>'


def connect_stream(url: str, parameters: Mapping[str, str], **attributes: str) -> str:
    """`<Connect><Stream>`: the call's audio both ways on our websocket, with `<Parameter>`s the stream's start
    message carries back (Twilio's `customParameters`, Telnyx's `custom_parameters`)."""
    attrs = "".join(f" {name}={quoteattr(value)}" for name, value in attributes.items())
    params = "".join(f"<Parameter name={quoteattr(k)} value={quoteattr(v)}/>" for k, v in parameters.items())
    return f"{XML_HEADER}<Response><Connect><Stream url={quoteattr(url)}{attrs}>{params}</Stream></Connect></Response>"


def reject(reason: str = "busy") -> str:
    """Decline the call before it is answered (the first verb): the caller hears a busy tone (or "rejected") and
    nobody is billed."""
    return f"{XML_HEADER}<Response><Reject reason={quoteattr(reason)}/></Response>"


def say_and_hang_up(text: str) -> str:
    return f"{XML_HEADER}<Response><Say>{escape(text)}</Say><Hangup/></Response>"


def dial(number: str) -> str:
    """Put the call through to `number` (the transfer to a person)."""
    return f"{XML_HEADER}<Response><Dial>{escape(number)}</Dial></Response>"
