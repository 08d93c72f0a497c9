// Validate an AsyncAPI document with the official parser (driven by the Python tests).
//
//   node validate-asyncapi.mjs <path to asyncapi.yaml>
//
// Prints each diagnostic of severity error (code, path, message), then a summary line with the
// error and warning counts; exits 1 if there are errors or no document could be built, else 0.
import { readFile } from "node:fs/promises";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";

const path = process.argv[2];
if (!path || process.argv.length > 3) {
  console.error("usage: node validate-asyncapi.mjs <path to asyncapi.yaml>");
  process.exit(1);
}

let text;
try {
  text = await readFile(path, "utf8");
} catch (error) {
  console.error(`cannot read ${path}: ${error.message}`);
  process.exit(1);
}

const parser = new Parser();
const { document, diagnostics } = await parser.parse(text, { source: path });
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
const warnings = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Warning);

for (const d of errors) {
  const where = d.path?.length ? d.path.join(".") : "(document)";
  const line = d.range?.start ? `:${d.range.start.line + 1}` : "";
  console.log(`error ${d.code} at ${where}${line}: ${d.message}`);
}
const version = document ? document.version() : "none";
console.log(`${path}: asyncapi ${version}, ${errors.length} error(s), ${warnings.length} warning(s)`);
process.exit(errors.length > 0 || document === undefined ? 1 : 0);
