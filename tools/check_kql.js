#!/usr/bin/env node
// Parse and type-check KQL queries with Microsoft's own Kusto language service
// (@kusto/language-service-next), against table schemas given by the caller.
//
// One process checks every query (loading the service takes about a second), so pytest runs it
// once for all the .kql files. Input on stdin, JSON:
//   {"tables": {"NTANetAnalytics": "(Col:type, ...)", ...},
//    "queries": [{"name": "risky_region", "text": "let ...; NTANetAnalytics | ..."}]}
// Output on stdout, JSON: [{"name", "diagnostics": [{"severity", "code", "start", "length",
//   "message"}], "columns": [["Name", "type"], ...]}] in the input order.
// Exit code: 0 when every query has no error diagnostic, 1 otherwise, 2 on bad input.
'use strict';

require('@kusto/language-service-next/bridge.js');
require('@kusto/language-service-next/Kusto.Language.Bridge.js');

const K = globalThis.Kusto.Language;
const S = K.Symbols;

function readStdin() {
  const chunks = [];
  const fd = 0;
  const buffer = Buffer.alloc(65536);
  const fs = require('fs');
  for (;;) {
    let n = 0;
    try {
      n = fs.readSync(fd, buffer, 0, buffer.length, null);
    } catch (err) {
      if (err.code === 'EAGAIN') continue;
      if (err.code === 'EOF') break;
      throw err;
    }
    if (n === 0) break;
    chunks.push(Buffer.from(buffer.subarray(0, n)));
  }
  return Buffer.concat(chunks).toString('utf8');
}

function main() {
  let input;
  try {
    input = JSON.parse(readStdin());
  } catch (err) {
    process.stderr.write(`check_kql: input is not JSON: ${err.message}\n`);
    return 2;
  }
  const tables = Object.entries(input.tables || {}).map(
    ([name, schema]) => new S.TableSymbol.$ctor7(name, schema, null));
  const globals = K.GlobalState.Default.WithDatabase(new S.DatabaseSymbol.ctor('workspace', tables));
  const results = [];
  let failed = false;
  for (const query of input.queries || []) {
    const code = K.KustoCode.ParseAndAnalyze(query.text, globals);
    const found = code.GetDiagnostics();
    const diagnostics = [];
    for (let i = 0; i < found.Count; i++) {
      const d = found.getItem(i);
      const severity = String(d.Severity);
      if (severity === 'Error') failed = true;
      diagnostics.push({severity, code: d.Code, start: d.Start, length: d.Length,
                        message: d.Message});
    }
    const columns = [];
    const resultType = code.ResultType;
    if (resultType && resultType.Columns) {
      for (let i = 0; i < resultType.Columns.Count; i++) {
        const c = resultType.Columns.getItem(i);
        columns.push([c.Name, c.Type.Name]);
      }
    }
    results.push({name: query.name, diagnostics, columns});
  }
  process.stdout.write(JSON.stringify(results) + '\n');
  return failed ? 1 : 0;
}

process.exitCode = main();
