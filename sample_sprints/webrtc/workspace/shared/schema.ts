// Types shared by the server and the client.
export interface Call {
  id: string;
  createdBy: string;
  participants: string[];
  startedAt: string | null;
}

export interface ChatMessage {
  id: string;
  callId: string;
  author: string;
  body: string;
  sentAt: string;
}
