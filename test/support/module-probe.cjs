// Preloaded (node --require) into a spawned process by tests that must know which modules it loaded: writes the
// paths of every CommonJS module in require.cache to $MODULE_PROBE_OUT when the process exits.
'use strict';
const { writeFileSync } = require('node:fs');
const out = process.env.MODULE_PROBE_OUT;
if (out) process.on('exit', () => writeFileSync(out, JSON.stringify(Object.keys(require.cache))));
