"""Events about files: scans, changes, reports, conflicts and their resolutions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypedDict

from engine.events.base import ABSENT, Absent, EventBody, EventType, event_kind


class ScannedFile(TypedDict):
    path: str
    checksum: str
    size: int | None
    mtime: str | None


class UnreadableFile(TypedDict):
    path: str
    error: str | None


class HolderRecord(TypedDict):
    agentId: str
    lockType: str
    resourceId: str
    lockId: str
    token: int
    taskId: str | None


class ConflictRecord(TypedDict):
    reason: str | None
    detail: str
    change: str
    holders: list[HolderRecord]
    canRevert: bool
    canMerge: bool




# ---------------------------------------------------------------- files


@dataclass(slots=True, kw_only=True)
class FileEvent(EventBody):
    """An event about one file (the Files pane redraws its row)."""

    path: str

    @property
    def subject(self) -> str:
        return self.path


@event_kind(EventType.FILES_SCANNED)
@dataclass(slots=True, kw_only=True)
class FilesScanned(EventBody):
    files: list[ScannedFile]
    unreadable: list[UnreadableFile] = field(default_factory=list)


@event_kind(EventType.FILE_CHANGED)
@dataclass(slots=True, kw_only=True)
class FileChanged(FileEvent):
    """A created, modified or renamed file, judged live: modified by its holder, or a conflict."""

    checksum: str
    size: int | None = None
    mtime: str | None = None
    change: str = "modified"
    renamed_from: str | None = None
    status: str = "modified"
    modified_by: str | None = None
    conflict: ConflictRecord | None = None
    source_conflict: ConflictRecord | None = None


@event_kind(EventType.FILE_DELETED)
@dataclass(slots=True, kw_only=True)
class FileDeleted(FileEvent):
    status: str = "deleted"
    modified_by: str | None = None
    conflict: ConflictRecord | None = None


@event_kind(EventType.FILE_UNREADABLE)
@dataclass(slots=True, kw_only=True)
class FileUnreadable(FileEvent):
    error: str | None


@event_kind(EventType.FILE_REPORTED)
@dataclass(slots=True, kw_only=True)
class FileReported(FileEvent):
    checksum: str = ""
    agent_id: str = ""
    lock_id: str | None = None
    token: int | None = None


@event_kind(EventType.CONFLICT_RESOLVED)
@dataclass(slots=True, kw_only=True)
class ConflictResolved(FileEvent):
    """Accept, revert or merge; a merge that left markers keeps the conflict (`status`)."""

    resolution: str
    by: str
    status: str
    conflicts: int | Absent = ABSENT  # a merge with markers: how many regions
    deleted: bool | Absent = ABSENT  # a resolved file: its content now
    checksum: str | None | Absent = ABSENT
    size: int | None | Absent = ABSENT
    mtime: str | None | Absent = ABSENT
    tool: str | Absent = ABSENT  # a merge: which merger ran


@event_kind(EventType.CONFLICT_ESCALATED)
@dataclass(slots=True, kw_only=True)
class ConflictEscalated(FileEvent):
    by: str
    note: str | None = None
