// Print the size of dist/index.js, minified and gzipped; fail above the budget.
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";

const BUDGET = 5 * 1024;
const code = readFileSync(new URL("../dist/index.js", import.meta.url));
const gzipped = gzipSync(code, { level: 9 }).length;
console.log(`dist/index.js: ${code.length} bytes minified, ${gzipped} bytes min+gzip (budget ${BUDGET})`);
if (gzipped > BUDGET) {
  console.error(`over the budget by ${gzipped - BUDGET} bytes`);
  process.exit(1);
}
