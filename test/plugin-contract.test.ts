/**
 * The plugin contract (core/plugin.ts) as the block builder holds plugins to it: `once`,
 * services provided, required and used (and the set-up order they make), a place in the chain
 * for what serves, `next` once per context, `ctx.withQuery`, `create` returning nothing, and the
 * roles a definition declares matching what the plugin does.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import dnsPacket from 'dns-packet';
import { buildChain, UPSTREAM_LINK } from '../core/chain.js';
import { ManualClock } from '../core/clock.js';
import { RequestContext } from '../core/context.js';
import { QType, rcodeName } from '../core/dns/constants.js';
import { buildQuery } from '../core/dns/message.js';
import { canonicalName, rcodeOf, readQuestion } from '../core/dns/wire.js';
import { PluginError, UpstreamUnavailableError, WireError } from '../core/errors.js';
import * as events from '../core/events.js';
import type { Token } from '../core/config/ast.js';
import type { Next, Plugin, PluginDefinition } from '../core/plugin.js';
import { serviceToken, Services } from '../core/services.js';
import { createUpstreamStage } from '../core/upstream/stage.js';
import { InOrderPolicy, UpstreamSet, type Upstream, type UpstreamPolicy } from '../core/upstream/upstream.js';
import { checkCorefile } from '../core/testing/config.js';
import { startFakeDns, type FakeDns } from '../core/testing/fake-dns.js';
import { inject } from '../core/testing/inject.js';
import { builtinPlugins } from '../plugins/index.js';
import { importGraph } from './helpers/imports.js';
import { dnscryptStamp } from './helpers/dnscrypt.js';
import { expectConfigError, testRegistry } from './helpers/plugins.js';

const rcode = (answer: Buffer | null) => (answer ? rcodeName(rcodeOf(answer)) : 'none');

/** `twice`: calls next a second time with the same context, as a buggy retry would. */
const twicePlugin: PluginDefinition<null> = {
  name: 'twice',
  position: { after: 'hosts' },
  parse: () => null,
  create: () => ({
    name: 'twice',
    async serve(ctx, next) {
      await next(ctx);
      return next(ctx);
    },
  }),
};

/** `alias FROM TO`: asks for TO instead of FROM, down the rest of the chain. */
const aliasPlugin: PluginDefinition<[string, string]> = {
  name: 'alias',
  position: { before: 'hosts' },
  once: true,
  parse: (directives) => [canonicalName(directives[0]!.args[0]!.text), canonicalName(directives[0]!.args[1]!.text)],
  create: ([from, to]) => ({
    name: 'alias',
    async serve(ctx, next) {
      if (ctx.name !== from) return next(ctx);
      const inner = ctx.withQuery(buildQuery(to, ctx.type, { id: ctx.id }));
      try {
        return await next(inner);
      } finally {
        inner.finish();
      }
    },
  }),
};

describe('next() once per context', () => {
  const ctxFor = (name: string) => RequestContext.ownQuery({ query: buildQuery(name, QType.A, { id: 7 }), transport: 'test', server: '.', clock: new ManualClock(), timeoutMs: 1000 });
  const counting = () => {
    const seen: string[] = [];
    const terminal: Next = async (ctx) => {
      seen.push(ctx.name);
      return buildQuery(ctx.name, QType.A, { id: 0 });
    };
    return { seen, terminal };
  };
  const plugin = (name: string, serve: Plugin['serve']): Plugin => ({ name, serve: serve! });

  it('a second call with the same context is an error of the caller, and nothing goes down again', async () => {
    const { seen, terminal } = counting();
    const chain = buildChain([plugin('twice', async (ctx, next) => (await next(ctx), next(ctx))), plugin('pass', (ctx, next) => next(ctx))], terminal);
    await assert.rejects(chain(ctxFor('a.test')), (err: unknown) => err instanceof PluginError && err.plugin === 'twice' && /next\(\) was called a second time/.test(err.message));
    assert.deepEqual(seen, ['a.test.']);
  });

  it('so is calling it again after the rest of the chain failed', async () => {
    let calls = 0;
    const failing: Next = async () => {
      calls++;
      throw new Error('upstream down');
    };
    const retry = plugin('retry', async (ctx, next) => {
      try {
        return await next(ctx);
      } catch {
        return next(ctx);
      }
    });
    await assert.rejects(buildChain([retry], failing)(ctxFor('a.test')), /plugin\/retry: next\(\) was called a second time/);
    assert.equal(calls, 1);
  });

  it('contexts of a plugin\'s own (withQuery) each go down once, and the client\'s still may', async () => {
    const { seen, terminal } = counting();
    const asker = plugin('asker', async (ctx, next) => {
      for (const name of ['k1.test', 'k2.test']) {
        const sub = ctx.withQuery(buildQuery(name, QType.TXT, { id: 1 }));
        await next(sub);
        sub.finish();
      }
      return next(ctx);
    });
    await buildChain([asker, plugin('pass', (ctx, next) => next(ctx))], terminal)(ctxFor('a.test'));
    assert.deepEqual(seen, ['k1.test.', 'k2.test.', 'a.test.']);
  });

  it('through a real server: the query is SERVFAIL, the plugin is named, one query went upstream', async () => {
    const fake = await startFakeDns();
    const veil = await inject(`. {\n  twice\n  forward . 127.0.0.1:${fake.port}\n}`, { registry: testRegistry([twicePlugin]) });
    try {
      assert.equal(rcode(await veil.query(buildQuery('a.test', QType.A, { id: 1 }))), 'SERVFAIL');
      assert.equal(fake.queries.length, 1);
      assert.ok(veil.logs.some((line) => /plugin\/twice: a\.test\. A: next\(\) was called a second time/.test(line)), veil.logs.join('\n'));
    } finally {
      await veil.stop();
      await fake.close();
    }
  });
});

describe('ctx.withQuery', () => {
  it('keeps the client, transport, block, deadline and span; reads the new question and EDNS; starts empty notes', () => {
    const clock = new ManualClock();
    const query = buildQuery('a.test', QType.A, { id: 1 });
    const ctx = new RequestContext({
      query,
      question: readQuestion(query),
      edns: null,
      client: { address: '192.0.2.9', port: 5353, family: 'IPv4' },
      transport: 'tls',
      listener: 'tls://127.0.0.1:853',
      datagram: false,
      server: 'corp.test',
      zone: 'corp.test.',
      clock,
      timeoutMs: 1500,
    });
    ctx.meta.cacheHit = true;
    clock.advance(500);
    const derived = ctx.withQuery(buildQuery('B.Test', QType.AAAA, { id: 2, edns: { dnssecOk: true } }));
    assert.deepEqual(
      [derived.name, derived.type, derived.dnssecOk, derived.client, derived.transport, derived.listener, derived.server, derived.zone, derived.span, derived.deadline],
      ['b.test.', QType.AAAA, true, ctx.client, 'tls', 'tls://127.0.0.1:853', 'corp.test', 'corp.test.', ctx.span, ctx.deadline],
    );
    assert.deepEqual(derived.meta, {});
    assert.throws(() => ctx.withQuery(Buffer.from([0, 1, 2])), WireError);
  });

  it('changes the query on the way down: the rest of the chain answers the new name', async () => {
    const veil = await inject('. {\n  alias alias.test real.test\n  hosts {\n    192.0.2.7 real.test\n  }\n}', { registry: testRegistry([aliasPlugin]) });
    try {
      const answer = dnsPacket.decode((await veil.query(buildQuery('alias.test', QType.A, { id: 3 })))!);
      assert.equal(answer.id, 3);
      assert.deepEqual(answer.answers!.map((a) => [a.name, (a as dnsPacket.StringAnswer).data]), [['real.test', '192.0.2.7']]);
    } finally {
      await veil.stop();
    }
  });
});

describe('once', () => {
  it('a second directive of a once plugin is refused at its line, with the hint', async () => {
    await expectConfigError('. {\n  hosts {\n    192.0.2.1 a.test\n  }\n  hosts {\n    192.0.2.2 b.test\n  }\n}', 5, 3, /hosts: hosts is given twice in this block; put every entry in one hosts directive$/);
  });

  it('without a hint for once: true, and for a plugin from outside too', async () => {
    await expectConfigError('. {\n  alias a.test b.test\n    alias c.test d.test\n}', 3, 5, /alias: alias is given twice in this block$/, testRegistry([aliasPlugin]));
  });

  it('plugins that take several directives still do', async () => {
    const built = await checkCorefile('. {\n  listen udp://127.0.0.1:0\n  listen tcp://127.0.0.1:0\n  forward . 127.0.0.1:9\n  forward corp.test 127.0.0.1:10\n}', { registry: testRegistry() });
    assert.deepEqual(built.blocks[0]!.listens.length, 2);
    assert.deepEqual(built.blocks[0]!.upstreams.size, 2);
  });
});

describe('provides, requires, uses', () => {
  const gadget = serviceToken<string>('test.Gadget');
  const seen: Array<string | null> = [];
  /** `provider WORD`: provides the gadget WORD. */
  const provider: PluginDefinition<string> = {
    name: 'provider',
    provides: [gadget],
    parse: (directives) => directives[0]!.args[0]!.text,
    create: (word, scope) => scope.provide(gadget, word),
  };
  /** `needer [NEEDS]`: needs the gadget only with an argument. */
  const needer: PluginDefinition<{ needs: Token[] }> = {
    name: 'needer',
    position: { after: 'hosts' },
    requires: [{ service: gadget, neededBy: (o) => o.needs, because: 'a widget needs a gadget' }],
    parse: (directives) => ({ needs: directives[0]!.args }),
    create: (_options, scope) => {
      seen.push(scope.service(gadget));
      return { name: 'needer', serve: (ctx, next) => next(ctx) };
    },
  };
  // Registered before its provider, and written before it: set-up order is not either of those.
  const registry = () => testRegistry([needer, provider]);

  it('a required service nobody provides is a config error at the option that needs it, naming the plugin that would', async () => {
    await expectConfigError('. {\n  forward . 127.0.0.1:9\n  needer  widget\n}', 3, 11, /needer: a widget needs a gadget, and this block has no provider directive$/, registry());
  });

  it('the provider is set up first, wherever it is written or registered; the chain keeps its own order', async () => {
    seen.length = 0;
    const built = await checkCorefile('. {\n  needer widget\n  hosts {\n    192.0.2.1 a.test\n  }\n  provider shiny\n}', { registry: registry() });
    assert.deepEqual(seen, ['shiny']);
    const block = built.blocks[0]!;
    assert.deepEqual(block.plugins.map((p) => p.name), ['hosts', 'provider', 'needer']);
    assert.deepEqual(block.links.map((p) => p.name), ['hosts', 'needer']);
  });

  it('not needed with these options: null without a provider', async () => {
    seen.length = 0;
    await checkCorefile('. {\n  needer\n}', { registry: registry() });
    assert.deepEqual(seen, [null]);
  });

  it('the built-ins: a listed server without sources names the option, as before', async () => {
    await expectConfigError('. {\n  dot {\n    server quad9\n  }\n}', 3, 12, /dot: a server without an address comes from the resolver lists, and this block has no sources directive$/);
    await expectConfigError('. {\n  anonymize {\n    relay r1\n    route * via r1\n  }\n}', 3, 11, /anonymize: a relay without an address comes from the resolver lists, and this block has no sources directive$/);
  });

  it('anonymize is set up after the protocol plugins whose upstreams it checks, and sources before them', async () => {
    const stamp = dnscryptStamp('192.0.2.53:443', Buffer.alloc(32, 1), '2.dnscrypt-cert.veil.test');
    const built = await checkCorefile(
      `. {\n  anonymize {\n    relay r1 192.0.2.1:443\n    route * via r1\n  }\n  dnscrypt {\n    server s1 ${stamp}\n  }\n  sources {\n    list public ./missing.md\n  }\n}`,
      { registry: testRegistry() },
    );
    assert.deepEqual(built.blocks[0]!.plugins.map((p) => p.name), ['sources', 'dnscrypt', 'anonymize']);
  });

  it('a service asked for in create without being declared is refused, as is one provided without being declared', async () => {
    const sneaky: PluginDefinition<null> = { name: 'sneaky', roles: ['observe'], parse: () => null, create: (_o, scope) => void scope.service(gadget) };
    const squatter: PluginDefinition<null> = { name: 'squatter', roles: ['observe'], parse: () => null, create: (_o, scope) => scope.provide(Services.accessPolicy, { admits: () => true }) };
    await expectConfigError('. {\n  sneaky\n}', 2, 3, /sneaky: plugin "sneaky" asked for test\.Gadget while it was created, but its definition neither requires nor uses it/, testRegistry([sneaky]));
    await expectConfigError('. {\n  squatter\n}', 2, 3, /squatter: plugin "squatter" provides veil\.AccessPolicy, which its definition does not declare in provides/, testRegistry([squatter]));
  });

  it('plugins that need what each other provides are refused', async () => {
    const other = serviceToken<string>('test.Other');
    const a: PluginDefinition<null> = { name: 'pa', provides: [gadget], uses: [other], parse: () => null, create: () => {} };
    const b: PluginDefinition<null> = { name: 'pb', provides: [other], uses: [gadget], parse: () => null, create: () => {} };
    await expectConfigError('. {\n  pb\n  pa\n}', 3, 3, /plugins pa, pb need services of each other/, testRegistry([a, b]));
  });
});

describe('a place in the chain', () => {
  it('a plugin that serves without one is refused at its directive; so is one that adds upstreams without providing them', async () => {
    const loner: PluginDefinition<null> = { name: 'loner', roles: ['observe'], parse: () => null, create: () => ({ name: 'loner', serve: (ctx, next) => next(ctx) }) };
    const adder: PluginDefinition<null> = {
      name: 'adder',
      roles: ['observe'],
      parse: () => null,
      create: (_o, scope) => scope.upstreams.add({ name: 'u', protocol: 'udp', address: '127.0.0.1:9', exchange: () => Promise.reject(new Error('unused')) }),
    };
    await expectConfigError('. {\n  loner\n}', 2, 3, /loner: the plugin serves queries but has no place in the chain/, testRegistry([loner]));
    await expectConfigError('. {\n  adder\n}', 2, 3, /adder: the plugin added upstreams, but its definition does not declare provides: \[Services\.upstreams\]/, testRegistry([adder]));
  });

  it('a plugin from outside that declares nothing is refused when registered; one that only provides needs no place', () => {
    const registry = testRegistry();
    assert.throws(() => registry.register({ name: 'idle', parse: () => null, create: () => {} }), /not in the built-in order; declare position/);
    assert.doesNotThrow(() => registry.register({ name: 'door', provides: [Services.accessPolicy], parse: () => null, create: () => {} }));
    assert.equal(registry.chainRank('door'), -1);
    assert.throws(() => registry.register({ name: 'lost', position: { after: 'metrics' }, parse: () => null, create: () => {} }), /not a plugin of the chain/);
  });

  it('create may return nothing: the plugin is set up, and stands nowhere in the chain', async () => {
    const built = await checkCorefile('. {\n  acl {\n    allow 127.0.0.1\n  }\n  log\n  forward . 127.0.0.1:9\n}', { registry: testRegistry() });
    const block = built.blocks[0]!;
    assert.deepEqual(block.plugins.map((p) => p.name), ['log', 'acl', 'forward']);
    assert.deepEqual(block.links.map((p) => p.name), ['log']);
    assert.equal(block.access.admits('192.0.2.1'), false);
  });
});

describe('roles', () => {
  const DIST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const channels = Object.values(events).filter((value) => typeof value === 'object' && value !== null && 'hasSubscribers' in value) as Array<{ name: string | symbol; hasSubscribers: boolean }>;
  let fake: FakeDns;
  before(async () => (fake = await startFakeDns()));
  after(() => fake.close());

  it('http: a plugin declares it exactly when its code opens HTTP endpoints', () => {
    const graph = importGraph(DIST);
    for (const definition of builtinPlugins) {
      const files = [...graph.keys()].filter((file) => file.startsWith(`plugins/${definition.name}/`));
      const opens = files.some((file) => graph.get(file)!.includes('lib/http-endpoints.js'));
      assert.equal(definition.roles?.includes('http') ?? false, opens, definition.name);
    }
  });

  const offline: Record<string, string> = {
    metrics: 'metrics 127.0.0.1:0',
    trace: 'trace',
    health: 'health 127.0.0.1:0',
    log: 'log',
    errors: 'errors',
    hosts: 'hosts {\n    192.0.2.1 a.test\n  }',
    cache: 'cache',
    path: 'path',
    loadbalance: 'loadbalance',
    acl: 'acl {\n    allow 127.0.0.1\n  }',
    ratelimit: 'ratelimit 100',
    filter: 'filter {\n    block_ipv6\n  }',
    dnssec: 'dnssec',
  };
  for (const [name, directive] of Object.entries(offline)) {
    it(`observe: ${name} declares it exactly when it subscribes to channels once started`, async () => {
      assert.deepEqual(channels.filter((c) => c.hasSubscribers).map((c) => c.name), []);
      const veil = await inject(`. {\n  ${directive}\n  forward . 127.0.0.1:${fake.port}\n}`, { registry: testRegistry() });
      const subscribed = channels.some((c) => c.hasSubscribers);
      await veil.stop();
      const definition = builtinPlugins.find((d) => d.name === name)!;
      assert.equal(definition.roles?.includes('observe') ?? false, subscribed);
    });
  }
});

describe('the upstream stage as the chain\'s last link', () => {
  const ctxFor = (name: string) => RequestContext.ownQuery({ query: buildQuery(name, QType.A, { id: 9 }), transport: 'test', server: '.', clock: new ManualClock(), timeoutMs: 1000 });
  const answering: Upstream = { name: 'answers', protocol: 'test', address: 'here', exchange: (query) => Promise.resolve(Buffer.from(echoAnswer(query))) };
  const failing: Upstream = { name: 'fails', protocol: 'test', address: 'here', exchange: () => Promise.reject(new UpstreamUnavailableError('port unreachable')) };
  const pass = (name: string): Plugin => ({ name, serve: (ctx, next) => next(ctx) });
  const stageOver = (upstream: Upstream, zone = '.', policy: UpstreamPolicy = new InOrderPolicy()) => {
    const set = new UpstreamSet();
    set.add(upstream, zone);
    return createUpstreamStage(set, policy);
  };
  const chainOver = (stage: ReturnType<typeof createUpstreamStage>, plugins: Plugin[] = [pass('a')]) => buildChain(plugins, stage.handler, UPSTREAM_LINK, stage.tagged);

  it('with no wrapper, its answers are noted as the upstream\'s and its failures tagged plugin/upstream, as by a link around it', async () => {
    const ctx = ctxFor('a.test');
    assert.equal(rcode(await chainOver(stageOver(answering))(ctx)), 'NOERROR');
    assert.equal(ctx.meta.answeredBy, UPSTREAM_LINK);

    const refusedCtx = ctxFor('b.test');
    assert.equal(rcode(await chainOver(stageOver(answering, 'corp.test'))(refusedCtx)), 'REFUSED', 'no upstream for the name');
    assert.equal(refusedCtx.meta.answeredBy, UPSTREAM_LINK);

    const failedCtx = ctxFor('c.test');
    await assert.rejects(chainOver(stageOver(failing))(failedCtx), (err) => err instanceof PluginError && err.plugin === UPSTREAM_LINK && /port unreachable/.test(err.message));
    assert.equal(failedCtx.meta.answeredBy, undefined);

    // A policy that throws (a plugin's) fails the query as the upstream stage's, not as a raw error.
    class Throwing extends InOrderPolicy {
      override report(): void {
        throw new Error('policy bug');
      }
    }
    await assert.rejects(chainOver(stageOver(answering, '.', new Throwing()))(ctxFor('d.test')), (err) => err instanceof PluginError && err.plugin === UPSTREAM_LINK && /policy bug/.test(err.message));
    class ThrowingOrder extends InOrderPolicy {
      override order(): Iterable<Upstream> {
        throw new Error('order bug');
      }
    }
    await assert.rejects(chainOver(stageOver(answering, '.', new ThrowingOrder()))(ctxFor('e.test')), (err) => err instanceof PluginError && err.plugin === UPSTREAM_LINK && /order bug/.test(err.message));
  });

  it('a wrapper around it sees the answer before the chain notes who gave it', async () => {
    const seenByWrapper: Array<string | undefined> = [];
    const wrapper: Plugin = {
      name: 'wrapper',
      wrapLink: (name, link) => async (ctx) => {
        const answer = await link(ctx);
        if (name === UPSTREAM_LINK) seenByWrapper.push(ctx.meta.answeredBy);
        return answer;
      },
    };
    const ctx = ctxFor('a.test');
    await chainOver(stageOver(answering), [wrapper, pass('a')])(ctx);
    assert.deepEqual(seenByWrapper, [undefined], 'the note is made outside the wrapper');
    assert.equal(ctx.meta.answeredBy, UPSTREAM_LINK);
  });
});

/** An answer to `query`: the same bytes with the response bit set. */
function echoAnswer(query: Buffer): Buffer {
  const answer = Buffer.from(query);
  answer[2] = answer[2]! | 0x80;
  return answer;
}
