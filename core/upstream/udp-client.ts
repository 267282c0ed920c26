/**
 * Plain DNS over UDP to one upstream address (core/upstream/datagram.ts carries the
 * datagrams): a random ID per query, free on its socket, and an answer accepted only when its ID
 * and question match ours; the client's ID is restored on the way back.
 *
 * With `randomizeCase` (DNS 0x20, draft-vixie-dnsext-dns0x20), the letters of the name we send
 * are upper or lower case at random, and the answer's question must repeat them exactly: a
 * forger who guessed the port and the ID must also guess one bit per letter. An answer whose
 * question differs only in case comes from a server that does not keep case (a forger would
 * have had to guess port and ID first): the query is sent again without mixed case, and after a
 * few such answers in a row the server is taken as one that folds case and is asked in the
 * client's case from then on (as unbound's caps fallback does).
 */
import { performance } from 'node:perf_hooks';
import { Buffer } from 'node:buffer';
import { HEADER_SIZE } from '../dns/constants.js';
import { isResponse, readId, sameQuestion, writeId } from '../dns/wire.js';
import { UpstreamTimeoutError } from '../errors.js';
import { DatagramSockets, type DatagramSocket } from './datagram.js';
import { promised, type Outcome } from './outcome.js';
import { freeId, randomId } from './query-id.js';

/** Answers are waited for under their DNS ID. */
const idOf = (packet: Buffer): number | null => (packet.length >= HEADER_SIZE && isResponse(packet) ? readId(packet) : null);

/** Answers in a row with the question's case changed after which a server is taken to fold case. */
const CASE_FOLDING_STRIKES = 3;

export interface UdpClientOptions {
  /** DNS 0x20: mix the case of the names sent, and require it back. */
  randomizeCase?: boolean;
  /** Told once, when the server turns out not to keep the case of names. */
  onCaseFolding?: () => void;
  /** Told of each query sent again after going unanswered (core/upstream/datagram.ts). */
  onResend?: () => void;
}

export class UdpClient {
  private readonly sockets: DatagramSockets<number>;
  private randomizeCase: boolean;
  /** Answers in a row whose question came back in other case. */
  private caseStrikes = 0;

  constructor(
    readonly host: string,
    readonly port: number,
    private readonly options: UdpClientOptions = {},
  ) {
    // One socket in use: a batch's queries leave together on it and their answers come back in
    // one read (datagram.ts, `count`); it is still replaced after its share of 64 queries.
    this.sockets = new DatagramSockets(host, port, `udp ${host}:${port}`, idOf, { count: 1, resend: true, ...(options.onResend ? { onResend: options.onResend } : {}) });
    this.randomizeCase = options.randomizeCase ?? false;
  }

  /** Queries waiting for an answer. */
  get inflight(): number {
    return this.sockets.inflight;
  }

  /** Sockets open to the server (in use, and replaced ones waiting for late answers). */
  get openSockets(): number {
    return this.sockets.open;
  }

  /**
   * Sends one query and waits up to `timeoutMs` for its answer (ID restored to the query's).
   * No async function here: the second sending that a case-changing server calls for is made
   * from inside the first one's `accept`, and the answer's promise follows it.
   */
  exchange(query: Buffer, timeoutMs: number): Promise<Buffer> {
    return promised((outcome) => this.exchangeTo(query, timeoutMs, outcome));
  }

  /** `exchange`, with the answer or the failure given to `outcome` (core/upstream/outcome.ts). */
  exchangeTo(query: Buffer, timeoutMs: number, outcome: Outcome): void {
    this.send(query, timeoutMs, this.randomizeCase, outcome);
  }

  private send(query: Buffer, timeoutMs: number, mixCase: boolean, outcome: Outcome): void {
    // One clock read for the socket's age, the deadline and the case check's time left.
    const sentAt = performance.now();
    let socket: DatagramSocket<number>;
    try {
      socket = this.sockets.pick(sentAt);
    } catch (error) {
      return outcome.reject(error);
    }
    const id = freeId(socket.pending);
    const wire = Buffer.from(query);
    writeId(wire, id);
    const nameEnd = mixCase ? mixNameCase(wire) : 0;
    const originalId = readId(query);
    const accept = (answer: Buffer): Buffer | Promise<Buffer> | null => {
      // An answer with another question is ignored, not trusted: keep waiting.
      if (!sameQuestion(wire, answer)) return null;
      if (nameEnd > 0) {
        if (!sameBytes(answer, wire, HEADER_SIZE, nameEnd)) return this.askInClientCase(query, timeoutMs, timeoutMs - (performance.now() - sentAt));
        this.caseStrikes = 0;
        // The client sees its own question again (names in the answer point to it).
        query.copy(answer, HEADER_SIZE, HEADER_SIZE, nameEnd);
      }
      writeId(answer, originalId);
      return answer;
    };
    socket.sendTo(wire, id, accept, timeoutMs, outcome, sentAt);
  }

  /**
   * The answer repeated our mixed-case question in other case: the query goes again in the
   * client's case, under a new ID, within what is left of its time. After a few such answers in
   * a row the server is taken to fold case.
   */
  private askInClientCase(query: Buffer, timeoutMs: number, left: number): Promise<Buffer> {
    if (++this.caseStrikes >= CASE_FOLDING_STRIKES && this.randomizeCase) {
      this.randomizeCase = false;
      this.options.onCaseFolding?.();
    }
    if (left <= 0) return Promise.reject(new UpstreamTimeoutError(`udp ${this.host}:${this.port}: no answer in the query's case within ${Math.round(timeoutMs)}ms`));
    // Called while a datagram is being handled: what goes wrong here (the client closed since,
    // every socket full) is this query's failure, never a throw into the socket's reader.
    return promised((outcome) => this.send(query, left, false, outcome));
  }

  close(): void {
    this.sockets.close();
  }
}

/**
 * Turns each letter of the question's name to upper or lower case at random, in place; returns
 * where the name ends, or 0 (changing nothing) when it has no letter or is not plain labels.
 */
export function mixNameCase(wire: Buffer): number {
  const end = plainNameEnd(wire);
  let bits = 0;
  let bitsLeft = 0;
  let letters = 0;
  // Label lengths are at most 63, below every letter: only letters match here.
  for (let i = HEADER_SIZE; i < end; i++) {
    const lower = wire[i]! | 0x20;
    if (lower < 0x61 || lower > 0x7a) continue;
    if (bitsLeft === 0) {
      bits = randomId();
      bitsLeft = 16;
    }
    wire[i] = bits & 1 ? lower & ~0x20 : lower;
    bits >>>= 1;
    bitsLeft--;
    letters++;
  }
  return letters > 0 ? end : 0;
}

/** True when `a` and `b` hold the same bytes from `start` to `end` (Buffer.compare with a range makes two views). */
function sameBytes(a: Buffer, b: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Where the question's name ends when it is uncompressed labels (as in every query), else 0. */
function plainNameEnd(wire: Buffer): number {
  for (let pos = HEADER_SIZE; pos < wire.length; ) {
    const length = wire[pos]!;
    if (length === 0) return pos + 1;
    if (length > 63) return 0;
    pos += length + 1;
  }
  return 0;
}
