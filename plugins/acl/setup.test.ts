/** acl: every line of its syntax, good and bad, with the place of each mistake. */
import { builds, refused, setupTable } from '../../test/helpers/setup-table.js';

setupTable('acl', [
  builds('acl {\nallow 10.0.0.0/8 2001:db8::1\ndeny *\nallow 192.0.2.1\n}', [
    { allow: true, network: '10.0.0.0/8' }, { allow: true, network: '2001:db8::1/128' }, { allow: false, network: '*' }, { allow: true, network: '192.0.2.1/32' },
  ]),
  refused('acl', 1, 1, /acl needs rules: "allow NET…" or "deny NET…" in a block$/),
  refused('acl {\n}', 1, 1, /acl needs rules/),
  refused('acl all {\nallow *\n}', 1, 5, /acl takes 0 arguments, got 1$/),
  refused('acl {\nallow\n}', 2, 1, /allow takes at least 1 argument, got 0$/),
  refused('acl {\ndeny 10.0.0.0/33\n}', 2, 6, /"10\.0\.0\.0\/33" is not an address or a CIDR range \(examples: 10\.0\.0\.0\/8, 2001:db8::\/32, \*\)$/),
  refused('acl {\nallow 10.0.0.0/8 lan.example\n}', 2, 18, /"lan\.example" is not an address or a CIDR range/),
  refused('acl {\nallow 10.0.0.0/8 {\n}\n}', 2, 18, /allow takes no block$/),
  refused('acl {\nalow 10.0.0.0/8\n}', 2, 1, /unknown option "alow" \(did you mean "allow"\?\)$/),
  refused('acl {\npermit 10.0.0.0/8\n}', 2, 1, /unknown option "permit"$/),
  refused('acl {\nallow *\n}\nacl {\ndeny *\n}', 4, 1, /acl is given twice in this block; put every rule in one acl directive$/),
]);
