/**
 * Builds the addons in native/ into dist/native/NAME.node, run by `npm run build` after tsc:
 * udp-batch.c (batched UDP for the udp:// listener and UDP upstreams), memory.c (returning freed
 * malloc memory to the kernel), tcp-ack.c (quick ACKs on upstream stream connections) and
 * raw-crypto.c (OpenSSL's HMAC, AES-GCM and X25519 for ODoH, lib/odoh/raw-crypto.ts).
 *
 * They are optional: without a C compiler, without Node's headers, or off Linux (recvmmsg and
 * sendmmsg), this says why, the udp:// listener uses node:dgram, memory is not trimmed and ODoH
 * uses node:crypto; raw-crypto.c also needs the OpenSSL headers Node ships beside its own (its
 * OpenSSL symbols, like napi_* and uv_*, resolve against the node binary). When the compiler
 * and headers are there, a failed compile fails the build.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, realpathSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const ADDONS = ['udp-batch', 'memory', 'tcp-ack', 'raw-crypto'];
/** Addons that include OpenSSL's headers: built only where Node ships them. */
const NEEDS_OPENSSL = new Set(['raw-crypto']);

/** Node's headers (node_api.h, uv.h): beside the running binary, as the `node` package and distributions install them. */
function findHeaders(): string | null {
  const candidates = [
    join(dirname(realpathSync(process.execPath)), '..', 'include', 'node'),
    join(root, 'node_modules', 'node', 'node_modules', `node-${process.platform}-${process.arch}`, 'include', 'node'),
    '/usr/include/node',
    '/usr/local/include/node',
  ];
  return candidates.find((dir) => existsSync(join(dir, 'node_api.h')) && existsSync(join(dir, 'uv.h'))) ?? null;
}

function compilerWorks(cc: string): boolean {
  try {
    execFileSync(cc, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function skip(reason: string): void {
  console.log(`native addons not built (${reason}): udp:// listeners use node:dgram, and freed memory is not trimmed`);
}

function build(): void {
  if (process.platform !== 'linux') return skip(`recvmmsg/sendmmsg are used on Linux only, this is ${process.platform}`);
  const cc = process.env.CC || 'cc';
  if (!compilerWorks(cc)) return skip(`no C compiler: ${cc}`);
  const headers = findHeaders();
  if (!headers) return skip("Node's headers (node_api.h, uv.h) not found");
  const hasOpenssl = existsSync(join(headers, 'openssl', 'evp.h'));
  if (!hasOpenssl) console.log("native/raw-crypto.c not built (no OpenSSL headers beside Node's): ODoH uses node:crypto");
  for (const name of ADDONS) {
    if (NEEDS_OPENSSL.has(name) && !hasOpenssl) continue;
    const source = join(root, 'native', `${name}.c`);
    const output = join(root, 'dist', 'native', `${name}.node`);
    if (existsSync(output) && statSync(output).mtimeMs >= statSync(source).mtimeMs) continue;
    mkdirSync(dirname(output), { recursive: true });
    // Undefined napi_*, uv_* and OpenSSL symbols are resolved against the node binary when it loads the addon.
    execFileSync(cc, ['-O2', '-std=gnu11', '-Wall', '-Wextra', '-Werror', '-fPIC', '-shared', '-fvisibility=hidden', '-I', headers, '-o', output, source], { stdio: 'inherit' });
  }
}

build();
