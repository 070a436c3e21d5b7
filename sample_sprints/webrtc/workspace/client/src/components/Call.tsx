import { useEffect, useRef } from "react";

export function Call({ callId }: { callId: string }) {
  const video = useRef<HTMLVideoElement>(null);
  useEffect(() => {
    // TODO: open the signaling socket and attach the remote stream.
  }, [callId]);
  return <video ref={video} autoPlay playsInline />;
}
