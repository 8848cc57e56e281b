// Prints the closing line of `npm test`: "N passed, N failed[, N skipped]".
// Counts vitest's tests from its JSON report plus the script's own checks; a
// missing or unreadable report (vitest crashed) counts as one failure.
import { readFileSync } from "node:fs";

const [report, checksPassed, checksFailed] = process.argv.slice(2);
let passed = Number(checksPassed);
let failed = Number(checksFailed);
let skipped = 0;
try {
  const r = JSON.parse(readFileSync(report, "utf8"));
  passed += r.numPassedTests;
  // A suite that failed to load has no test results of its own: count it once.
  failed += r.numFailedTests + r.testResults.filter((s) => s.status === "failed" && s.assertionResults.length === 0).length;
  skipped += r.numPendingTests + (r.numTodoTests ?? 0);
} catch (e) {
  console.error(`no vitest report at ${report}: ${e.message}`);
  failed += 1;
}
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);

