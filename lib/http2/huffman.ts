/**
 * The Huffman code of HPACK (RFC 7541 §5.2, Appendix B), for decoding header strings.
 *
 * The code is canonical: within each length, codes rise with the symbol's value, and each
 * length's first code follows the last of the shorter ones. So the code lengths below, one per
 * symbol 0–255 and EOS (256), determine every code; the decoding tree is built from them once.
 */
// Buffer (and performance) imported, not the globals: in Node 24 the globals are accessors,
// about 10 ns a use, on every request here.
import { Buffer } from 'node:buffer';

const CODE_LENGTHS = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  30,
];

const EOS = 256;

/** Every symbol's code, assigned in canonical order. */
const CODES = (() => {
  const codes: { code: number; length: number }[] = [];
  const symbols = CODE_LENGTHS.map((length, symbol) => ({ symbol, length })).sort((a, b) => a.length - b.length || a.symbol - b.symbol);
  let code = 0;
  let previousLength = symbols[0]!.length;
  for (const [i, { symbol, length }] of symbols.entries()) {
    if (i > 0) code = (code + 1) << (length - previousLength);
    previousLength = length;
    codes[symbol] = { code, length };
  }
  return codes;
})();

/**
 * The decoding tree as a flat array: node n's children are at 2n (bit 0) and 2n+1 (bit 1).
 * A child > 0 is the next node; a child < 0 is a leaf holding symbol -(child + 1); 0 is a
 * branch no code takes.
 */
const TREE = (() => {
  const tree = new Int32Array(2 * CODE_LENGTHS.length);
  let nodes = 1; // node 0 is the root
  CODES.forEach(({ code, length }, symbol) => {
    let node = 0;
    for (let bit = length - 1; bit > 0; bit--) {
      const slot = 2 * node + ((code >>> bit) & 1);
      if (tree[slot] === 0) tree[slot] = nodes++;
      node = tree[slot]!;
    }
    tree[2 * node + (code & 1)] = -(symbol + 1);
  });
  return tree;
})();

export class HuffmanError extends Error {}

/**
 * The tree walked four bits at a time: for node n and nibble v, entry 16n+v holds the node the
 * walk ends on (above bit 9) and what it completed on the way (the low 9 bits): a symbol
 * 0–255, STEP_NONE, or STEP_ERROR. No code is shorter than 5 bits, so a nibble completes at
 * most one symbol. Decoding is then two table reads a byte instead of eight tree steps.
 */
const STEP_NONE = 0x100;
/** A nibble step that ends on the EOS symbol or on a branch no code takes. */
const STEP_ERROR = 0x101;
const STEP_BITS = 9;
const STEP_MASK = (1 << STEP_BITS) - 1;

const { NIBBLE_STEPS, ACCEPTING } = (() => {
  const nodes = TREE.length / 2;
  const steps = new Int32Array(16 * nodes);
  for (let start = 0; start < nodes; start++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = start;
      let found = STEP_NONE;
      for (let bit = 3; bit >= 0 && found !== STEP_ERROR; bit--) {
        const child = TREE[2 * node + ((nibble >>> bit) & 1)]!;
        if (child < 0) {
          found = -child - 1 === EOS ? STEP_ERROR : -child - 1;
          node = 0;
        } else if (child === 0) {
          found = STEP_ERROR;
        } else {
          node = child;
        }
      }
      steps[16 * start + nibble] = (node << STEP_BITS) | found;
    }
  }
  // A string may end at the root, or within at most 7 bits of padding that are all 1s (the
  // start of EOS): the nodes reached from the root by up to seven 1 bits.
  const accepting = new Uint8Array(nodes);
  accepting[0] = 1;
  for (let node = 0, depth = 1; depth <= 7; depth++) {
    const child = TREE[2 * node + 1]!;
    if (child <= 0) break;
    accepting[child] = 1;
    node = child;
  }
  return { NIBBLE_STEPS: steps, ACCEPTING: accepting };
})();

/** Decoded bytes gather here and become one string at the end (not a string grown per character). */
let scratch = Buffer.allocUnsafeSlow(256);

/**
 * Decodes `length` bytes at `offset` as latin1 text. Throws HuffmanError for EOS inside the
 * string, and for padding longer than 7 bits or not made of 1s (RFC 7541 §5.2).
 */
export function decodeHuffman(bytes: Uint8Array, offset: number, length: number): string {
  // No code is shorter than 5 bits: 8 bits of input make at most 1.6 characters.
  const most = Math.ceil((length * 8) / 5);
  if (most > scratch.length) scratch = Buffer.allocUnsafeSlow(Math.max(most, 2 * scratch.length));
  const out = scratch;
  let written = 0;
  let node = 0;
  for (let i = offset; i < offset + length; i++) {
    const byte = bytes[i]!;
    let step = NIBBLE_STEPS[16 * node + (byte >>> 4)]!;
    let symbol = step & STEP_MASK;
    if (symbol < STEP_NONE) out[written++] = symbol;
    else if (symbol === STEP_ERROR) throw huffmanStepError(node, byte >>> 4);
    node = step >>> STEP_BITS;
    step = NIBBLE_STEPS[16 * node + (byte & 0xf)]!;
    symbol = step & STEP_MASK;
    if (symbol < STEP_NONE) out[written++] = symbol;
    else if (symbol === STEP_ERROR) throw huffmanStepError(node, byte & 0xf);
    node = step >>> STEP_BITS;
  }
  if (!ACCEPTING[node]) throw new HuffmanError('Huffman padding that is not the start of EOS');
  return out.toString('latin1', 0, written);
}

/** Says which of the two ways a nibble went wrong: the EOS symbol, or bits that are no code. */
function huffmanStepError(node: number, nibble: number): HuffmanError {
  for (let bit = 3; bit >= 0; bit--) {
    const child = TREE[2 * node + ((nibble >>> bit) & 1)]!;
    if (child === 0) break;
    if (child < 0) {
      if (-child - 1 === EOS) return new HuffmanError('the EOS symbol inside a Huffman-coded string');
      node = 0;
    } else {
      node = child;
    }
  }
  return new HuffmanError('bits that are no Huffman code');
}

/** Encodes latin1 text, padding with the start of EOS (for tests: answers are sent uncoded). */
export function encodeHuffman(text: string): Buffer {
  const out: number[] = [];
  let acc = 0;
  let bits = 0;
  for (let i = 0; i < text.length; i++) {
    const { code, length } = CODES[text.charCodeAt(i) & 0xff]!;
    for (let bit = length - 1; bit >= 0; bit--) {
      acc = (acc << 1) | ((code >>> bit) & 1);
      if (++bits === 8) {
        out.push(acc & 0xff);
        acc = 0;
        bits = 0;
      }
    }
  }
  if (bits > 0) out.push(((acc << (8 - bits)) | ((1 << (8 - bits)) - 1)) & 0xff);
  return Buffer.from(out);
}
