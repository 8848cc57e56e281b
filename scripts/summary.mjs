// Prints the closing line of `npm test`: "N passed, N failed[, N skipped]".
// Counts vitest's tests from its JSON report plus the script's own checks; a
// missing or unreadable report (vitest crashed) counts as one failure, and so
// does a file that failed with no failing test of its own (it did not load,
// or a beforeAll/afterAll hook failed and its tests were skipped), and a
// non-zero exit of vitest that nothing else accounts for.
import { readFileSync } from "node:fs";

const [report, checksPassed, checksFailed, vitestStatus = "0"] = process.argv.slice(2);
let passed = Number(checksPassed);
let failed = Number(checksFailed);
let skipped = 0;
try {
  const r = JSON.parse(readFileSync(report, "utf8"));
  passed += r.numPassedTests;
  const fileFailures = r.testResults.filter((s) => s.status === "failed" && !s.assertionResults.some((a) => a.status === "failed")).length;
  failed += r.numFailedTests + fileFailures;
  if (Number(vitestStatus) !== 0 && r.numFailedTests + fileFailures === 0) failed += 1;
  skipped += r.numPendingTests + (r.numTodoTests ?? 0);
} catch (e) {
  console.error(`no vitest report at ${report}: ${e.message}`);
  failed += 1;
}
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);

