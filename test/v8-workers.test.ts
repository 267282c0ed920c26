/**
 * V8's worker threads run nicer than the event loop (core/v8-workers.ts): checked on the real
 * bin/veil through /proc, with the default and with VEIL_V8_WORKER_NICE=0; a thread that is
 * gone, or no /proc at all, is passed over without an error.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { DEFAULT_NICE_STEP, lowerV8WorkerPriority } from '../core/v8-workers.js';
import { makeTempDir, startVeil, type VeilProcess } from './helpers/veil-process.js';

const linux = process.platform === 'linux';

/** The nice value in a stat line (its 19th field). */
function niceOf(statFile: string): number {
  const stat = readFileSync(statFile, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
}

/** Each thread's name and nice value. */
function threads(pid: number): { name: string; nice: number }[] {
  return readdirSync(`/proc/${pid}/task`).map((tid) => ({
    name: readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim(),
    nice: niceOf(`/proc/${pid}/task/${tid}/stat`),
  }));
}

const COREFILE = '. {\n  listen udp://127.0.0.1:0\n  forward . 127.0.0.1:9\n}\n';

describe('V8 worker threads', { skip: !linux && 'threads are read from /proc (Linux)' }, () => {
  const started: VeilProcess[] = [];
  after(async () => {
    for (const veil of started) await veil.stop();
  });

  it('run at a nice value 10 above the main thread, which keeps its own', async () => {
    const veil = await startVeil(COREFILE);
    started.push(veil);
    const list = threads(veil.child.pid!);
    const main = { nice: niceOf(`/proc/${veil.child.pid}/stat`) };
    const workers = list.filter((t) => t.name === 'V8Worker');
    assert.ok(workers.length > 0, `no V8Worker thread among ${list.map((t) => t.name).join(', ')}`);
    for (const worker of workers) assert.equal(worker.nice, Math.min(19, main.nice + DEFAULT_NICE_STEP), JSON.stringify(list));
    assert.equal(main.nice, niceOf('/proc/self/stat'), "the event loop keeps the parent's priority");
  });

  it('are left alone with VEIL_V8_WORKER_NICE=0', async () => {
    const veil = await startVeil(COREFILE, {}, 'Corefile', undefined, { VEIL_V8_WORKER_NICE: '0' });
    started.push(veil);
    const list = threads(veil.child.pid!);
    const main = { nice: niceOf(`/proc/${veil.child.pid}/stat`) };
    assert.ok(list.some((t) => t.name === 'V8Worker'));
    for (const worker of list.filter((t) => t.name === 'V8Worker')) assert.equal(worker.nice, main.nice);
  });

  it('passes over a thread that ended and a missing /proc, without an error', () => {
    const dir = makeTempDir({ '999999999/comm': 'V8Worker\n', '999999998/comm': 'MainThread\n' });
    assert.equal(lowerV8WorkerPriority(10, dir), 0);
    assert.equal(lowerV8WorkerPriority(10, `${dir}/none`), 0);
    assert.equal(lowerV8WorkerPriority(0, dir), 0);
  });
});
