// A small reconnecting WebSocket wrapper used by the call screen.
export function connect(url: string, onMessage: (data: unknown) => void): WebSocket {
  const socket = new WebSocket(url);
  socket.onmessage = (event) => onMessage(JSON.parse(event.data));
  socket.onclose = () => setTimeout(() => connect(url, onMessage), 1000);
  return socket;
}
