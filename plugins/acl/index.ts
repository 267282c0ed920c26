/**
 * `acl`: who may query this server block.
 *
 *     acl {
 *         allow NET…
 *         deny NET…
 *     }
 *
 * Rules are tried in the order written; the first whose range holds the client decides. A
 * client no rule names gets the default: loopback and private addresses are admitted, others
 * refused. A refused client gets REFUSED before any plugin runs.
 */
import type { Directive, Token } from '../../core/config/ast.js';
import { localOnly, type AccessPolicy } from '../../core/access.js';
import { configError, expectArgs, expectNoBlock, readOptions } from '../../core/config/options.js';
import { AddressRanges, parseCidrToken } from '../../core/net/cidr.js';
import type { PluginDefinition } from '../../core/plugin.js';
import { Services } from '../../core/services.js';

const NAME = 'acl';

export interface AclRule {
  allow: boolean;
  /** `10.0.0.0/8`, `::1/128`, as written but canonical. */
  network: string;
}

export const aclPlugin: PluginDefinition<AclRule[]> = {
  name: NAME,
  once: 'put every rule in one acl directive',
  // The door asks it before any plugin runs.
  provides: [Services.accessPolicy],

  parse(directives) {
    const d = directives[0]!;
    expectArgs(NAME, d, 0);
    const rules: AclRule[] = [];
    const rule = (allow: boolean) => (line: Directive) => {
      expectNoBlock(NAME, line);
      for (const token of expectArgs(NAME, line, 1, Infinity)) rules.push({ allow, network: parseNetwork(token) });
    };
    readOptions(NAME, d.block, { allow: rule(true), deny: rule(false) }, ['allow', 'deny']);
    if (rules.length === 0) throw configError(NAME, d.name, 'acl needs rules: "allow NET…" or "deny NET…" in a block');
    return rules;
  },

  create(rules, scope) {
    scope.provide<AccessPolicy>(Services.accessPolicy, new RulePolicy(rules));
  },
};

/** `IP`, `IP/BITS`, or `*` (every address of both families). */
function parseNetwork(token: Token): string {
  return token.text === '*' ? '*' : parseCidrToken(NAME, token, '10.0.0.0/8, 2001:db8::/32, *');
}

class RulePolicy implements AccessPolicy {
  private readonly rules: Array<{ allow: boolean; ranges: AddressRanges | null }>;

  constructor(rules: AclRule[]) {
    this.rules = rules.map(({ allow, network }) => ({ allow, ranges: network === '*' ? null : new AddressRanges([network]) }));
  }

  admits(address: string): boolean {
    for (const rule of this.rules) {
      if (rule.ranges === null || rule.ranges.has(address)) return rule.allow;
    }
    return localOnly.admits(address);
  }
}
