// Who is in which call, and since when.
const sessions = new Map<string, { callId: string; joinedAt: number }>();

export function join(userId: string, callId: string): void {
  sessions.set(userId, { callId, joinedAt: Date.now() });
}

export function leave(userId: string): void {
  sessions.delete(userId);
}
