/**
 * Where each plugin stands, CoreDNS's plugin.cfg idea: order is data, not the order of lines in
 * a Corefile. Each plugin feels the effects of those after it and must not care about those
 * before it: metrics and trace see everything, the log sees the final answer, errors turns
 * failures below it into SERVFAIL, acl and ratelimit turn clients away before any work, path
 * answers its own names (and watches the rest of the chain resolve one), filter looks before
 * the cache, hosts answers before an upstream is asked (its local data is not validated), dnssec
 * validates what upstreams say (and asks them for keys through the links after it), loadbalance
 * picks the upstream. Directives that only configure (listen, the protocol plugins that add upstreams)
 * are listed too, so that their setup runs in a known order.
 */
export const PLUGIN_ORDER: readonly string[] = [
  // setup only
  'plugin',
  'sources',
  'listen',
  // the query chain
  'metrics',
  'health',
  'trace',
  'dnstap',
  'log',
  'errors',
  'acl',
  'ratelimit',
  'path',
  'filter',
  'cache',
  'hosts',
  'dnssec',
  'loadbalance',
  // protocol plugins: they add upstreams; anonymize decorates DNSCrypt upstreams, so it comes after
  'forward',
  'dot',
  'doh',
  'odoh',
  'dnscrypt',
  'anonymize',
];
