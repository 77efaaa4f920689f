// Public API of the report half of `masksub compare`: read a comparison directory, compute the
// statistics (results.json) and write report.md / report.html with charts.

export {
  collectComparison,
  writeResults,
  parseRunDirectoryName,
  readMetrics,
  RESULTS_SCHEMA,
  type AccuracyStats,
  type BaselineComparison,
  type Comparison,
  type EpochRecord,
  type GroupResult,
  type ResultsFile,
  type RunConfig,
  type RunDirectoryName,
  type RunRecord,
  type SeedValue,
  type SettingSummary,
} from './collect.js';
export { renderReport, renderHtml, renderMarkdown, type ReportFiles } from './render.js';
export { buildCharts, describeSetting, CHART_IDS, type Chart, type ChartId, type ChartSet } from './charts.js';
export { computeVerdicts, agreementPhrase, SIGNIFICANCE, type Agreement, type Verdict } from './verdicts.js';
export { mean, sampleStd, sampleVariance, twoSidedPValue, welchTTest, type WelchResult } from './stats.js';
export { writeSyntheticComparison, defaultSyntheticRuns, type SyntheticComparisonOptions, type SyntheticRun } from './synthetic.js';
