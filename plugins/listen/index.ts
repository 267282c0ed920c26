/**
 * `listen URL… [{ options }]`: where a server block takes queries. Each URL's scheme names a
 * registered listener (core brings udp and tcp; plugins add tls, https, dnscrypt, relay). The
 * options block is shared by the URLs of the line: each option must be known to at least one
 * of their schemes, and each scheme reads the options it knows.
 */
import type { Directive } from '../../core/config/ast.js';
import { configError, didYouMean, expectArgs } from '../../core/config/options.js';
import type { Location } from '../../core/errors.js';
import type { ListenRequest } from '../../core/listeners/listener.js';
import { AddressError, parseEndpoint } from '../../core/net/address.js';
import type { PluginDefinition } from '../../core/plugin.js';
import { Services } from '../../core/services.js';

const NAME = 'listen';

export const listenPlugin: PluginDefinition<ListenRequest[]> = {
  name: NAME,
  provides: [Services.listenRequests],

  parse(directives, { transports }) {
    const requests: ListenRequest[] = [];
    for (const d of directives) {
      const urls = expectArgs(NAME, d, 1, Infinity);
      const parsed = urls.map((token) => {
        const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(token.text)?.[1]?.toLowerCase();
        if (!scheme) throw configError(NAME, token, `"${token.text}" is not a listener URL (examples: udp://127.0.0.1:53, tcp://[::1]:53)`);
        const transport = transports.get(scheme);
        if (!transport) {
          throw configError(NAME, token, `unknown listener scheme "${scheme}"${didYouMean(scheme, transports.schemes)}; known: ${transports.schemes.join(', ')}`);
        }
        try {
          return { token, transport, endpoint: parseEndpoint(token.text, transport.defaultPort) };
        } catch (err) {
          if (err instanceof AddressError) throw configError(NAME, token, err.message);
          throw err;
        }
      });
      const options = checkOptions(d, parsed.map((p) => p.transport.optionNames));
      for (const { token, transport, endpoint } of parsed) {
        if (requests.some((r) => r.endpoint.text === endpoint.text)) throw configError(NAME, token, `${endpoint.text} is listed twice`);
        const location: Location = { file: token.file, line: token.line, column: token.column };
        const known = options.filter((o) => transport.optionNames.includes(o.name.text));
        requests.push({ endpoint, options: transport.parseOptions(endpoint, known, location), location });
      }
    }
    return requests;
  },

  create(requests, scope) {
    for (const request of requests) scope.listeners.add(request);
  },
};

function checkOptions(d: Directive, known: ReadonlyArray<readonly string[]>): Directive[] {
  const all = new Set(known.flat());
  const seen = new Set<string>();
  for (const option of d.block ?? []) {
    const name = option.name.text;
    if (!all.has(name)) {
      throw configError(NAME, option.name, `unknown option "${name}" for ${d.args.map((a) => a.text.split(':')[0]).join(', ')}${didYouMean(name, all)}`);
    }
    if (seen.has(name)) throw configError(NAME, option.name, `option "${name}" is given twice`);
    seen.add(name);
  }
  return d.block ?? [];
}
