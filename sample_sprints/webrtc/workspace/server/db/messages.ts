import type { ChatMessage } from "../../shared/schema";

// In-memory stand-in for the messages table.
const messages: ChatMessage[] = [];

export async function saveMessage(message: ChatMessage): Promise<void> {
  messages.push(message);
}
