import { WebSocketServer } from "ws";

// Relays SDP offers/answers and ICE candidates between the peers of one call.
export function startSignaling(port: number): WebSocketServer {
  const wss = new WebSocketServer({ port });
  wss.on("connection", (socket) => {
    socket.on("message", (data) => wss.clients.forEach((peer) => peer !== socket && peer.send(data)));
  });
  return wss;
}
