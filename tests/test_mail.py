"""The manager's post office: a reply it decided is sent, even when the manager stops mid-flush.

Found with the client library: a refusal's `agent_error` was journaled as decided but never sent
when `stop()` cancelled the flusher while it waited for the journal's sync (2 runs in 6).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from engine.events import MessageRecorded
from engine.journal import JournalWriter
from engine.mail import Mail
from engine.protocol import MANAGER_ID, IPCMessage, MessageType, make_message
from engine.recorder import Recorder
from engine.transports.inproc import InProcessTransport, PriorityInbox


async def _stopped_mid_flush(tmp_path: Path) -> tuple[list[str], list[str]]:
    """Cancel a delivery while it waits for the sync; return what the agent had, then after the stop's delivery."""
    journal = JournalWriter.create(tmp_path / "j.jsonl", {"sprint": "mail", "planDigest": "0" * 16})
    recorder = Recorder(journal, clock=time.monotonic, wall=time.time)
    transport = InProcessTransport()
    mail = Mail(transport, recorder)
    inbox = transport.subscribe("alice")
    recorder.emit(MessageRecorded(message={"type": "resource_lock", "from": "alice", "to": MANAGER_ID}))  # a decision to make durable
    mail.post(make_message(MessageType.AGENT_ERROR, MANAGER_ID, "alice", {"error": "refused: b.txt is held"}))
    delivering = asyncio.create_task(mail.deliver())
    await asyncio.sleep(0)  # it has taken the outbox and waits for the journal's sync
    delivering.cancel()
    with pytest.raises(asyncio.CancelledError):
        await delivering
    before = [message.payload.error for message in _drain(inbox)]
    await mail.deliver_rest()
    after = [message.payload.error for message in _drain(inbox)]
    journal.close()
    return before, after


def _drain(inbox: PriorityInbox) -> list[IPCMessage]:
    messages = []
    while (message := inbox.get_nowait()) is not None:
        messages.append(message)
    return messages


def test_a_reply_decided_before_the_stop_reaches_its_agent(tmp_path: Path) -> None:
    before, after = asyncio.run(_stopped_mid_flush(tmp_path))
    assert before == []  # the cancelled delivery sent nothing: the journal was not yet durable
    assert after == ["refused: b.txt is held"]
