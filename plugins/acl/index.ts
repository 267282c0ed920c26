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
import net from 'node:net';
import type { Directive, Token } from '../../core/config/ast.js';
import { localOnly, type AccessPolicy } from '../../core/access.js';
import { configError, expectArgs, expectNoBlock, readOptions } from '../../core/config/options.js';
import { unmapIpv4 } from '../../core/net/address.js';
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
  if (token.text === '*') return '*';
  const [address = '', bits, extra] = token.text.split('/');
  const family = net.isIP(address);
  const max = family === 6 ? 128 : 32;
  if (family === 0 || extra !== undefined || (bits !== undefined && (!/^\d+$/.test(bits) || Number(bits) > max))) {
    throw configError(NAME, token, `"${token.text}" is not an address or a CIDR range (examples: 10.0.0.0/8, 2001:db8::/32, *)`);
  }
  return `${address}/${bits ?? max}`;
}

class RulePolicy implements AccessPolicy {
  private readonly rules: Array<{ allow: boolean; list: net.BlockList | null }>;

  constructor(rules: AclRule[]) {
    this.rules = rules.map(({ allow, network }) => {
      if (network === '*') return { allow, list: null };
      const [address, bits] = network.split('/') as [string, string];
      const list = new net.BlockList();
      list.addSubnet(address, Number(bits), net.isIPv6(address) ? 'ipv6' : 'ipv4');
      return { allow, list };
    });
  }

  admits(address: string): boolean {
    const plain = unmapIpv4(address);
    const type = net.isIPv6(plain) ? 'ipv6' : 'ipv4';
    for (const rule of this.rules) {
      if (rule.list === null || rule.list.check(plain, type)) return rule.allow;
    }
    return localOnly.admits(address);
  }
}
