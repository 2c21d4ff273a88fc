#!/usr/bin/env node
// Prints the plain closing line of a test run, `N passed, N failed, N skipped`, from
// vitest's JSON report, and exits non-zero when any test failed or the report is missing
// (a run that crashed before reporting has not passed).
import { existsSync, readFileSync } from 'node:fs';

const file = process.argv[2] ?? 'test-artifacts/vitest.json';
if (!existsSync(file)) {
  console.error(`no test report at ${file}: the test run did not finish`);
  process.exit(1);
}
const r = JSON.parse(readFileSync(file, 'utf8'));
const passed = r.numPassedTests ?? 0;
const failed = (r.numFailedTests ?? 0) + (r.numRuntimeErrorTestSuites ?? 0);
const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 || r.success === false || passed === 0 ? 1 : 0);
