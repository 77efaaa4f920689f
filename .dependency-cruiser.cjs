// Import rules of masksub's layers (ARCHITECTURE.md), checked by dependency-cruiser in `npm test`
// (`npm run lint:imports`). A layer may import the layers listed as below it, never one above:
//   io <- tensor <- run
//   data (plain arrays, imports nothing of ours)
//   tensor <- nn <- models <- masksub <- train <- experiment / report <- cli
//   nn <- optim <- train
// report sits beside train (it reads run directories, never trains) and below experiment.
/** Each layer and the layers it may import (its own folder is always allowed). */
const ALLOWED = {
  io: [],
  data: ['io'],
  tensor: ['io'],
  run: ['io', 'tensor'],
  nn: ['io', 'tensor'],
  models: ['io', 'tensor', 'nn'],
  masksub: ['io', 'tensor', 'nn', 'models'],
  optim: ['io', 'tensor', 'nn'],
  distributed: ['io', 'tensor', 'nn', 'data'],
  train: ['io', 'tensor', 'run', 'data', 'nn', 'models', 'masksub', 'optim', 'distributed'],
  report: ['io', 'run', 'masksub'],
  experiment: ['io', 'tensor', 'run', 'data', 'nn', 'models', 'masksub', 'optim', 'distributed', 'train', 'report'],
  cli: Object.keys({ io: 1, tensor: 1, run: 1, data: 1, nn: 1, models: 1, masksub: 1, optim: 1, distributed: 1, train: 1, report: 1, experiment: 1 }),
};
const LAYERS = Object.keys(ALLOWED);

module.exports = {
  forbidden: [
    ...LAYERS.map((layer) => ({
      name: `layer-${layer}`,
      comment: `src/${layer} may import only ${ALLOWED[layer].length ? ALLOWED[layer].map((name) => `src/${name}`).join(', ') : 'node modules'} (see .dependency-cruiser.cjs)`,
      severity: 'error',
      from: { path: `^src/${layer}/` },
      to: { path: `^src/(?!(${[layer, ...ALLOWED[layer]].join('|')})/)[^/]+/` },
    })),
    {
      name: 'no-circular',
      comment: 'modules must not import each other in a cycle (a cycle through type-only imports is erased at run time and allowed)',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true, viaOnly: { dependencyTypesNot: ['type-only'] } },
    },
    {
      name: 'no-index-inside-src',
      comment: 'src/index.ts is the package entry; modules inside src import each other directly',
      severity: 'error',
      from: { path: '^src/[^/]+/' },
      to: { path: '^src/index\\.ts$' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default'], extensions: ['.ts', '.js'] },
  },
};
