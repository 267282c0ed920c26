/**
 * Quick acknowledgements on upstream stream connections (native/tcp-ack.c, TCP_QUICKACK).
 * Linux delays the ACK of data it received by up to 40 ms, hoping to send it with data of its
 * own; a server that keeps Nagle's algorithm on (unbound over TLS does) will not send its next
 * small answer while the previous one is unacknowledged. So when a turn of the event loop read
 * answers and left queries waiting on a connection, and wrote nothing on it (a write carries
 * the acknowledgement), the pool acknowledges at once. Without the addon (not built, not
 * Linux) this does nothing, and such servers are caught by the pool's copies instead.
 */
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';

interface TcpAckAddon {
  ack(fd: number): boolean;
}

let addon: TcpAckAddon | null | undefined;

function load(): TcpAckAddon | null {
  if (addon === undefined) {
    try {
      addon = createRequire(import.meta.url)('../../native/tcp-ack.node') as TcpAckAddon;
    } catch {
      addon = null; // not built here
    }
  }
  return addon;
}

/**
 * The socket's file descriptor, for the addon; null when there is none to reach. Node keeps it
 * on the handle (`_handle.fd`, also through a TLS socket's), which is not a public API: without
 * it, nothing is acknowledged early.
 */
function fdOf(socket: Socket): number | null {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : null;
}

/** A function that acknowledges what `socket` received so far, or null when that cannot be done here. */
export function quickAcker(socket: Socket): (() => void) | null {
  const ack = load();
  if (!ack || process.env.VEIL_QUICKACK === 'off') return null;
  return () => {
    const fd = fdOf(socket);
    if (fd !== null) ack.ack(fd);
  };
}
