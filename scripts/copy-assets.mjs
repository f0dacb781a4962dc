// Copies what swc does not compile but the built apps read at run time (Lua scripts) into dist/, beside the
// compiled code that loads them.
import { cpSync, readdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
for (const top of ['apps', 'libs']) {
  for (const entry of readdirSync(join(root, top), { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.lua')) continue;
    const from = join(entry.parentPath, entry.name);
    cpSync(from, join(root, 'dist', relative(root, from)));
  }
}
