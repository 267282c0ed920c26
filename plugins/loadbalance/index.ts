/**
 * `loadbalance [POLICY] { max_fails N  fail_timeout D  health_check D  shuffle_answers  fallback NAME… }`:
 * chooses which of the block's upstreams (forward, dot, doh, dnscrypt) gets each query, tracks
 * their health, and optionally rotates addresses in answers. It installs its policy as the
 * block's upstream policy; core's upstream stage follows it.
 */
import type { Token } from '../../core/config/ast.js';
import { configError, didYouMean, expectArgs, expectNoBlock, flag, parseDuration, parseInteger, readOptions } from '../../core/config/options.js';
import type { PluginDefinition } from '../../core/plugin.js';
import { Services } from '../../core/services.js';
import { POLICIES, type HealthSettings, type PolicyName } from './policies.js';
import { probeUpstream } from './probe.js';
import { rotateAddresses } from './shuffle.js';

const NAME = 'loadbalance';

export interface LoadbalanceOptions {
  policy: PolicyName;
  health: HealthSettings;
  shuffleAnswers: boolean;
  /** Upstreams tried only when no other one is usable or answered, with the tokens naming them. */
  fallback: Token[];
}

export const loadbalancePlugin: PluginDefinition<LoadbalanceOptions> = {
  name: NAME,
  once: 'a block has one policy',
  provides: [Services.upstreamPolicy],

  parse(directives) {
    const d = directives[0]!;
    const [policyToken] = expectArgs(NAME, d, 0, 1);
    const options: LoadbalanceOptions = {
      policy: policyToken ? parsePolicy(policyToken) : 'round_robin',
      health: { maxFails: 2, failTimeoutMs: 5000, healthCheckMs: null },
      shuffleAnswers: false,
      fallback: [],
    };
    const duration = (line: typeof d, min: number): number => parseDuration(NAME, expectArgs(NAME, line, 1)[0]!, { min, max: 3_600_000 });
    readOptions(NAME, d.block, {
      max_fails: (line) => (options.health.maxFails = parseInteger(NAME, expectArgs(NAME, line, 1)[0]!, 0, 1000)),
      fail_timeout: (line) => (options.health.failTimeoutMs = duration(line, 100)),
      health_check: (line) => (options.health.healthCheckMs = duration(line, 100)),
      shuffle_answers: (line) => (options.shuffleAnswers = flag(NAME, line)),
      fallback: (line) => {
        expectNoBlock(NAME, line);
        options.fallback.push(...expectArgs(NAME, line, 1, Infinity));
      },
    }, ['fallback']);
    return options;
  },

  create(options, scope) {
    const server = scope.block.zones.map((z) => z.text).join(' ');
    const policy = new POLICIES[options.policy]({
      clock: scope.clock,
      logger: scope.logger,
      random: Math.random,
      settings: options.health,
      probe: (upstream) => probeUpstream(upstream, scope.clock, server),
      fallback: new Set(options.fallback.map((t) => t.text)),
    });
    scope.provide(Services.upstreamPolicy, policy);
    // Upstreams from lists (servers_from) come at start: the names are checked once they are in.
    const checkFallback = (): void => {
      for (const token of options.fallback) {
        if (!scope.upstreams.has(token.text)) {
          throw configError(NAME, token, `fallback: no upstream named "${token.text}" in this block (upstreams: ${scope.upstreams.all.map((u) => u.name).join(', ') || 'none'})`);
        }
      }
    };
    if (!options.shuffleAnswers) return { name: NAME, start: checkFallback };
    let turn = 0;
    return {
      name: NAME,
      start: checkFallback,
      async serve(ctx, next) {
        const answer = await next(ctx);
        if (answer) rotateAddresses(answer, turn++);
        return answer;
      },
    };
  },
};

function parsePolicy(token: Token): PolicyName {
  if (Object.hasOwn(POLICIES, token.text)) return token.text as PolicyName;
  const names = Object.keys(POLICIES);
  throw configError(NAME, token, `unknown policy "${token.text}"${didYouMean(token.text, names)}; policies: ${names.join(', ')}`);
}
