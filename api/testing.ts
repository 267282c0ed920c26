/**
 * `veil/plugin/testing`: the test kit for plugins. `inject` builds a configuration from
 * Corefile text and hands queries to Veil's door without a socket; `expectConfigError` checks
 * that a configuration is refused at the right line and column; `startTestServer` runs a real
 * server on loopback; `startFakeDns` is a scriptable upstream; `queryUdp`/`queryTcp` are a
 * client. `createBuiltinRegistry` gives Veil's own plugins, to register yours beside them.
 */
export { inject, type Injected, type InjectFrom, type InjectOptions } from '../core/testing/inject.js';
export { checkCorefile, expectConfigError, type CheckOptions } from '../core/testing/config.js';
export { startTestServer, type TestServer, type TestServerOptions } from '../core/testing/server.js';
export { answerFor, defaultHandler, startFakeDns, type FakeDns, type FakeHandler, type FakeQuery } from '../core/testing/fake-dns.js';
export { queryTcp, queryUdp, sendUdpRaw } from '../core/testing/client.js';
export { ManualClock, SystemClock } from '../core/clock.js';
export { PluginRegistry } from '../core/registry.js';
export { createBuiltinRegistry } from '../plugins/index.js';
