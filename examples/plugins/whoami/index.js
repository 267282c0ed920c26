// A Veil plugin that lives outside Veil's tree: `whoami` answers TXT queries for `whoami.` (or
// the name given) with the address the query came from, like CoreDNS's whoami, and counts the
// answers it gave across reloads, and as a metric of its own.
//
// Load it with a line in a server block:   plugin ./whoami/index.js
// and use it with:                         whoami [NAME] { ttl SECONDS }
//
// Veil is imported by its package name (`npm install veil` next to your Corefile, or a link to a
// checkout), through its one public entry for plugins; its tests use `veil/plugin/testing`.
import { buildReply, canonicalName, expectArgs, parseInteger, QType, readOptions } from 'veil/plugin';

const NAME = 'whoami';

/** @type {import('veil/plugin').PluginDefinition<{ name: string, ttl: number }>} */
const whoami = {
  name: NAME,
  // Not one of Veil's own plugins, so it says where it stands in the chain.
  position: { after: 'hosts' },
  // One whoami line per server block: Veil refuses a second at its line.
  once: true,

  parse(directives) {
    const d = directives[0];
    const [name] = expectArgs(NAME, d, 0, 1);
    const options = { name: canonicalName(name?.text ?? 'whoami'), ttl: 0 };
    readOptions(NAME, d.block, {
      ttl: (line) => {
        options.ttl = parseInteger(NAME, expectArgs(NAME, line, 1)[0], 0, 86400);
      },
    });
    return options;
  },

  create(options, scope) {
    // Kept across reloads: the count goes on where the previous configuration left it.
    const stats = scope.keep('stats', () => ({ answered: 0 }));
    scope.logger.info(`answering TXT ${options.name} (${stats.answered} answered so far)`);
    // Shown by the metrics plugin as veil_plugin_whoami_answers_total{server=".",transport="udp"}.
    const answers = scope.metrics.counter('answers_total', 'TXT answers whoami gave.', ['transport']);
    return {
      name: NAME,
      async serve(ctx, next) {
        if (ctx.name !== options.name || ctx.type !== QType.TXT) return next(ctx);
        stats.answered++;
        answers.inc({ transport: ctx.transport });
        const text = Buffer.from(`${ctx.client.address} port ${ctx.client.port} via ${ctx.transport}`);
        return buildReply(ctx.query, {
          questionEnd: ctx.question.end,
          edns: ctx.edns,
          authoritative: true,
          answers: [{ type: QType.TXT, ttl: options.ttl, rdata: Buffer.concat([Buffer.from([text.length]), text]) }],
        });
      },
    };
  },
};

export default whoami;
