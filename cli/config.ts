/** Reading a configuration file in either form: a Corefile, or JSONC (`.json`, `.jsonc`). */
import type { ConfigFile } from '../core/config/ast.js';
import { parseCorefile } from '../core/config/corefile.js';
import { parseJsoncConfig } from '../core/config/jsonc.js';

export function loadConfigFile(file: string): ConfigFile {
  return /\.jsonc?$/i.test(file) ? parseJsoncConfig(file) : parseCorefile(file);
}
