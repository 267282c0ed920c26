/**
 * Inputs for fuzzing: arbitrary bytes, and structure-aware mutations of valid messages — the
 * kinds of damage a hostile client or a broken network produces: flipped bits, truncation,
 * splices of two messages, counts that promise more records than there are, compression
 * pointers that loop, and bytes inserted in the middle.
 */
import fc from 'fast-check';

export type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'splice'; at: number; other: number; from: number }
  | { kind: 'count'; section: number; value: number }
  | { kind: 'pointer-loop'; at: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'extend'; bytes: Uint8Array };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('splice' as const), at: fc.nat(), other: fc.nat(), from: fc.nat() }),
  fc.record({ kind: fc.constant('count' as const), section: fc.integer({ min: 0, max: 3 }), value: fc.oneof(fc.integer({ min: 0, max: 8 }), fc.constant(0xffff)) }),
  fc.record({ kind: fc.constant('pointer-loop' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ maxLength: 16 }) }),
  fc.record({ kind: fc.constant('extend' as const), bytes: fc.uint8Array({ maxLength: 64 }) }),
);

export function applyMutation(input: Buffer, m: Mutation, seeds: readonly Buffer[]): Buffer {
  if (input.length === 0 && m.kind !== 'extend' && m.kind !== 'insert') return input;
  const at = input.length === 0 ? 0 : m.kind === 'extend' ? 0 : (m as { at?: number }).at! % input.length;
  switch (m.kind) {
    case 'flip': {
      const out = Buffer.from(input);
      out[at] = out[at]! ^ (1 << m.bit);
      return out;
    }
    case 'truncate':
      return input.subarray(0, at);
    case 'splice': {
      const other = seeds[m.other % seeds.length]!;
      return Buffer.concat([input.subarray(0, at), other.subarray(other.length ? m.from % other.length : 0)]);
    }
    case 'count': {
      if (input.length < 12) return input;
      const out = Buffer.from(input);
      out.writeUInt16BE(m.value, 4 + 2 * m.section);
      return out;
    }
    case 'pointer-loop': {
      // a pointer to itself (or to just before itself), where a name might be
      if (input.length < 2) return input;
      const out = Buffer.from(input);
      const pos = Math.min(at, out.length - 2);
      const target = m.at % 2 === 0 ? pos : Math.max(0, pos - 2);
      out[pos] = 0xc0 | ((target >> 8) & 0x3f);
      out[pos + 1] = target & 0xff;
      return out;
    }
    case 'insert':
      return Buffer.concat([input.subarray(0, at), Buffer.from(m.bytes), input.subarray(at)]);
    case 'extend':
      return Buffer.concat([input, Buffer.from(m.bytes)]);
  }
}

/** Arbitrary bytes, or a seed with 1–4 mutations applied. */
export function bytesLike(seeds: readonly Buffer[]): fc.Arbitrary<Buffer> {
  const random = fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.from(b));
  if (seeds.length === 0) return random;
  const mutated = fc
    .tuple(fc.nat({ max: seeds.length - 1 }), fc.array(mutation, { minLength: 1, maxLength: 4 }))
    .map(([index, mutations]) => mutations.reduce((acc, m) => applyMutation(acc, m, seeds), seeds[index]!));
  return fc.oneof({ arbitrary: mutated, weight: 3 }, { arbitrary: random, weight: 1 });
}

/** Text mutations for configuration formats: random text, or seeds with characters changed. */
export function textLike(seeds: readonly string[], alphabet: string): fc.Arbitrary<string> {
  const chars = fc.constantFrom(...alphabet.split(''));
  const random = fc.array(chars, { maxLength: 300 }).map((a) => a.join(''));
  if (seeds.length === 0) return random;
  const edit = fc.record({ at: fc.nat(), remove: fc.integer({ min: 0, max: 8 }), insert: fc.array(chars, { maxLength: 8 }).map((a) => a.join('')) });
  const mutated = fc
    .tuple(fc.nat({ max: seeds.length - 1 }), fc.array(edit, { minLength: 1, maxLength: 5 }))
    .map(([index, edits]) =>
      edits.reduce((text, e) => {
        const at = text.length === 0 ? 0 : e.at % text.length;
        return text.slice(0, at) + e.insert + text.slice(at + e.remove);
      }, seeds[index]!),
    );
  return fc.oneof({ arbitrary: mutated, weight: 3 }, { arbitrary: random, weight: 1 });
}
