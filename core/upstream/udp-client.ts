/**
 * Plain DNS over UDP to one upstream address (core/upstream/datagram.ts carries the
 * datagrams): a random ID per query, free on its socket, and an answer accepted only when its ID
 * and question match ours; the client's ID is restored on the way back.
 */
import { HEADER_SIZE } from '../dns/constants.js';
import { isResponse, readId, sameQuestion, writeId } from '../dns/wire.js';
import { DatagramSockets } from './datagram.js';
import { freeId } from './query-id.js';

/** Answers are waited for under their DNS ID. */
const idOf = (packet: Buffer): number | null => (packet.length >= HEADER_SIZE && isResponse(packet) ? readId(packet) : null);

export class UdpClient {
  private readonly sockets: DatagramSockets<number>;

  constructor(
    readonly host: string,
    readonly port: number,
    socketCount = 4,
  ) {
    this.sockets = new DatagramSockets(host, port, `udp ${host}:${port}`, idOf, socketCount);
  }

  /** Queries waiting for an answer. */
  get inflight(): number {
    return this.sockets.inflight;
  }

  /** Sends one query and waits up to `timeoutMs` for its answer (ID restored to the query's). */
  async exchange(query: Buffer, timeoutMs: number): Promise<Buffer> {
    const socket = this.sockets.pick();
    const id = freeId(socket.pending);
    const wire = Buffer.from(query);
    writeId(wire, id);
    const originalId = readId(query);
    const accept = (answer: Buffer): Buffer | null => {
      // An answer with another question is ignored, not trusted: keep waiting.
      if (!sameQuestion(wire, answer)) return null;
      writeId(answer, originalId);
      return answer;
    };
    return socket.send(wire, id, accept, timeoutMs);
  }

  close(): void {
    this.sockets.close();
  }
}
