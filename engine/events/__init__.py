"""Events: the only way state changes, one typed class per kind (the machinery is in `base`).

Importing this package registers every kind, so any journal record can be decoded.
"""

from engine.events.base import ABSENT, Absent, decode_body, Event, event_kind, EventBody, EventDecodeError, EventType, iso_from_ns, iso_utc, Json
from engine.events.sprint import SprintStarted, SprintPaused, SprintResumed, SprintFinished, SprintRecovered, StateDigest, AgentRegistered, AgentStatus, AgentDead, AgentRestarted, AgentSession, UsageRecorded
from engine.events.tasks import TaskEvent, TaskReady, TaskAssigned, TaskBlocked, TaskUnblocked, TaskStarted, TaskProgress, TaskCompleted, TaskFailed, TaskRequeued, TaskCancelled, TaskPriority, TaskReset, CompletionRefused
from engine.events.locks import LockItem, LockEvent, LockGranted, LockQueued, LockReleased, LockRenewed, WaiterRemoved, LockRefused
from engine.events.messages import MessageRecorded, MessageRejected, OperatorAction
from engine.events.files import ScannedFile, UnreadableFile, HolderRecord, ConflictRecord, FileEvent, FilesScanned, FileChanged, FileDeleted, FileUnreadable, FileReported, ConflictResolved, ConflictEscalated

__all__ = [
    "ABSENT",
    "Absent",
    "AgentDead",
    "AgentRegistered",
    "AgentRestarted",
    "AgentSession",
    "AgentStatus",
    "CompletionRefused",
    "ConflictEscalated",
    "ConflictRecord",
    "ConflictResolved",
    "Event",
    "EventBody",
    "EventDecodeError",
    "EventType",
    "FileChanged",
    "FileDeleted",
    "FileEvent",
    "FileReported",
    "FileUnreadable",
    "FilesScanned",
    "HolderRecord",
    "Json",
    "LockEvent",
    "LockGranted",
    "LockItem",
    "LockQueued",
    "LockRefused",
    "LockReleased",
    "LockRenewed",
    "MessageRecorded",
    "MessageRejected",
    "OperatorAction",
    "ScannedFile",
    "SprintFinished",
    "SprintPaused",
    "SprintRecovered",
    "SprintResumed",
    "SprintStarted",
    "StateDigest",
    "TaskAssigned",
    "TaskBlocked",
    "TaskCancelled",
    "TaskCompleted",
    "TaskEvent",
    "TaskFailed",
    "TaskPriority",
    "TaskProgress",
    "TaskReady",
    "TaskRequeued",
    "TaskReset",
    "TaskStarted",
    "TaskUnblocked",
    "UnreadableFile",
    "UsageRecorded",
    "WaiterRemoved",
    "decode_body",
    "event_kind",
    "iso_from_ns",
    "iso_utc",
]
