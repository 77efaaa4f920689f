// The commands of `masksub` (their options, for parsing and for help), the text of `masksub --help`
// and of each command's --help, and the README's settings and methods tables. Settings and methods
// come from the configuration schema (src/train/config.ts) and the method table
// (src/masksub/methods.ts), so help and README list every one of them with its real default.
import { describeDefaultRatio, METHOD_TABLE, METHODS, REGULARIZERS } from '../masksub/methods.js';
import { PRESETS, SETTING_GROUPS, settingDocs, type SettingDoc, type SettingName } from '../train/config.js';

export interface CommandOption {
  flag: string;
  /** The value's name; null for a switch (--resume, --no-resume). */
  placeholder: string | null;
  help: string;
}

export interface CommandSpec {
  summary: string;
  usage: readonly string[];
  options: readonly CommandOption[];
  /**
   * Whether training settings are flags of the command; `sets` names the settings the command
   * sets itself, each with what to tell a user who sets it.
   */
  settings: { sets: Partial<Record<SettingName, string>> } | null;
  /** Names of the positional arguments, in order. */
  positional: readonly string[];
}

const HELP: CommandOption = { flag: 'help', placeholder: null, help: 'show this help' };
const PRESET: CommandOption = { flag: 'preset', placeholder: 'NAME', help: `start from a preset's settings: ${Object.keys(PRESETS).join(', ')} (\`masksub presets\`)` };
const CONFIG: CommandOption = { flag: 'config', placeholder: 'FILE', help: 'YAML file of settings ("lr: 0.001", "batch-size: 64"); it may name a preset' };

export const COMMANDS = {
  train: {
    summary: 'train one model into a run directory (resumable)',
    usage: [
      'masksub train --out DIR [--preset NAME] [--config FILE] [--SETTING VALUE ...] [--overwrite] [--nproc N]',
      'masksub train --out DIR --resume [--nproc N]',
      'torchrun --nproc-per-node N [--nnodes M ...] --no-python npx masksub train --out DIR ...',
    ],
    options: [
      { flag: 'out', placeholder: 'DIR', help: 'run directory: config.json, metrics.jsonl, summary.csv, checkpoints, done.json' },
      { flag: 'resume', placeholder: null, help: 'continue the unfinished run in DIR with its saved settings' },
      { flag: 'overwrite', placeholder: null, help: 'replace the run in DIR' },
      { flag: 'nproc', placeholder: 'N', help: 'data parallel on this machine: start N worker processes (c10d Gloo), each with 1/N of every batch and of the cores; batch-size stays the global batch. Under torchrun or srun, leave it out: the job comes from their environment' },
      PRESET, CONFIG, HELP,
    ],
    settings: { sets: {} },
    positional: [],
  },
  eval: {
    summary: 'test loss, top-1 and top-5 of a run\'s saved weights',
    usage: ['masksub eval --checkpoint DIR [--best] [--dataset NAME] [--data-dir DIR] [--batch-size N]'],
    options: [
      { flag: 'checkpoint', placeholder: 'DIR', help: 'the run directory' },
      { flag: 'best', placeholder: null, help: 'the best epoch\'s weights (best.safetensors) instead of the last' },
      { flag: 'dataset', placeholder: 'NAME', help: 'test on another data set of the same shape (default: the run\'s)' },
      { flag: 'data-dir', placeholder: 'DIR', help: 'directory of that data set (default: the run\'s)' },
      { flag: 'batch-size', placeholder: 'N', help: 'images per evaluation batch (default 256)' },
      HELP,
    ],
    settings: null,
    positional: [],
  },
  compare: {
    summary: 'train methods x seeds (x ratios) and write report.md, report.html and results.json',
    usage: ['masksub compare --out DIR [--methods LIST] [--seeds LIST] [--ratios LIST | --ratio X] [--jobs N] [--preset NAME] [--config FILE] [--SETTING VALUE ...]'],
    options: [
      { flag: 'out', placeholder: 'DIR', help: 'comparison directory: runs/<method>[-r<ratio>]-s<seed>/ and the report; run again to continue' },
      { flag: 'methods', placeholder: 'LIST', help: `comma-separated methods (default baseline,masking,masksub): ${METHODS.join(', ')}` },
      { flag: 'seeds', placeholder: 'LIST', help: 'comma-separated seeds, one run each (default 0,1)' },
      { flag: 'ratios', placeholder: 'LIST', help: 'comma-separated ratios, each trained for every method but baseline (default: each method\'s own)' },
      { flag: 'ratio', placeholder: 'X', help: 'one ratio for every method but baseline' },
      { flag: 'jobs', placeholder: 'N', help: 'runs trained at a time, each in its own process with threads / N threads (default 1); small models finish a comparison sooner with one run per core' },
      PRESET, CONFIG, HELP,
    ],
    settings: {
      sets: {
        method: 'compare trains every method of --methods; use --methods',
        seed: 'compare trains one run per seed of --seeds; use --seeds (e.g. --seeds 3 for one seed)',
        ratio: 'compare sets the ratio of each run from --ratio / --ratios (flags), or each method\'s default',
      },
    },
    positional: [],
  },
  report: {
    summary: 'write results.json, report.md and report.html of a comparison directory again',
    usage: ['masksub report DIR'],
    options: [HELP],
    settings: null,
    positional: ['DIR'],
  },
  'export-images': {
    summary: 'write a data set (fashion-mnist, mnist, cifar10, cifar100, synthetic) as a folder of PNG files for --dataset folder',
    usage: ['masksub export-images --dataset NAME --out DIR [--data-dir DIR] [--limit-train N] [--limit-test N]'],
    options: [
      { flag: 'dataset', placeholder: 'NAME', help: 'the data set to write out' },
      { flag: 'out', placeholder: 'DIR', help: 'a new or empty directory: DIR/train/<class>/*.png and DIR/val/<class>/*.png' },
      { flag: 'data-dir', placeholder: 'DIR', help: 'directory of the data set\'s files (as for train)' },
      { flag: 'limit-train', placeholder: 'N', help: 'write a class-balanced N of the training images (default: all)' },
      { flag: 'limit-test', placeholder: 'N', help: 'write a class-balanced N of the test images (default: all)' },
      HELP,
    ],
    settings: null,
    positional: [],
  },
  models: { summary: 'list the models', usage: ['masksub models'], options: [HELP], settings: null, positional: [] },
  presets: { summary: 'list the presets', usage: ['masksub presets'], options: [HELP], settings: null, positional: [] },
  info: { summary: 'libtorch build, threads and the BLAS library loaded', usage: ['masksub info'], options: [HELP], settings: null, positional: [] },
} satisfies Record<string, CommandSpec>;

export type CommandName = keyof typeof COMMANDS;

export function isCommand(name: string): name is CommandName {
  return Object.hasOwn(COMMANDS, name);
}

const WIDTH = 100;

/**
 * Words wrapped to the width, every line after the first indented; the first line starts at
 * column `start` (where a caller's label ends).
 */
function wrap(text: string, indent: number, start = indent, width = WIDTH): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    const column = lines.length === 0 ? start : indent;
    if (line && column + line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) lines.push(line);
  return lines.join(`\n${' '.repeat(indent)}`);
}

const COLUMN = 28;

function optionLine(usage: string, text: string): string {
  const head = `  ${usage}`;
  const body = wrap(text, COLUMN);
  return head.length < COLUMN - 1 ? `${head.padEnd(COLUMN)}${body}` : `${head}\n${' '.repeat(COLUMN)}${body}`;
}

function settingUsage(setting: SettingDoc): string {
  return setting.placeholder === null ? `--[no-]${setting.flag}` : `--${setting.flag} ${setting.placeholder}`;
}

/** The settings part of a command's help: every setting with its values, default and meaning. */
function settingsHelp(sets: Partial<Record<SettingName, string>>): string {
  const lines: string[] = [];
  let group: string | null = null;
  for (const setting of settingDocs()) {
    if (sets[setting.name] !== undefined) continue;
    if (setting.group !== group) {
      group = setting.group;
      lines.push('', `${SETTING_GROUPS[setting.group]}:`);
    }
    lines.push(optionLine(settingUsage(setting), `${setting.help} [${setting.values}; default ${setting.defaultText}]`));
  }
  return lines.join('\n');
}

function methodsHelp(): string {
  const lines = ['Methods (--method, --methods), with the default --ratio:'];
  for (const method of METHODS) {
    lines.push(optionLine(method, `${METHOD_TABLE[method].description} [ratio ${describeDefaultRatio(method)}]`));
  }
  return lines.join('\n');
}

/** `masksub --help`: the commands and the methods. */
export function overviewHelp(): string {
  const commands = (Object.keys(COMMANDS) as CommandName[]).map((name) => optionLine(name, COMMANDS[name].summary));
  return [
    'masksub — MaskSub (masked sub-model) training on libtorch',
    '',
    'Usage: masksub COMMAND [options]      masksub COMMAND --help lists a command\'s options',
    '',
    'Commands:',
    ...commands,
    '',
    methodsHelp(),
    '',
    'Every training setting is a flag of train and compare and a key of a --config YAML file;',
    'flags win over the file, the file over --preset. MASKSUB_THREADS sets the default of --threads.',
  ].join('\n');
}

/** A command's --help: usage, its own options and, for train and compare, every setting. */
export function commandHelp(name: CommandName): string {
  const spec: CommandSpec = COMMANDS[name];
  const lines = [`masksub ${name} — ${spec.summary}`, '', ...spec.usage.map((usage, index) => wrap(`${index === 0 ? 'Usage:' : '      '} ${usage}`, 7 + name.length + 9, 0)), '', 'Options:'];
  for (const option of spec.options) lines.push(optionLine(option.placeholder === null ? `--${option.flag}` : `--${option.flag} ${option.placeholder}`, option.help));
  if (spec.settings !== null) {
    const sets = spec.settings.sets;
    const setHere = Object.keys(sets).map((setting) => `--${setting}`);
    lines.push(
      '',
      wrap(`Settings (flags, or keys of the --config file such as "batch-size: 64"; a true/false setting is --X, --no-X or --X=false${setHere.length ? `; ${name} sets ${setHere.join(', ')} itself` : ''}):`, 0, 0),
    );
    lines.push(settingsHelp(sets));
    if (name === 'train') lines.push('', methodsHelp());
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// README tables

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\*/g, '\\*');
}

/** The README's settings table (between its settings markers). */
export function settingsMarkdown(): string {
  const rows = ['| setting | default | values | meaning |', '| --- | --- | --- | --- |'];
  let group: string | null = null;
  for (const setting of settingDocs()) {
    if (setting.group !== group) {
      group = setting.group;
      rows.push(`| **${SETTING_GROUPS[setting.group]}** | | | |`);
    }
    rows.push(`| \`--${setting.flag}\` | ${cell(setting.defaultText)} | ${cell(setting.values)} | ${cell(setting.help)} |`);
  }
  return rows.join('\n');
}

/** The README's methods table (between its methods markers). */
export function methodsMarkdown(): string {
  const rows = ['| method | sub-model | regularizer | `--ratio` default | what it trains |', '| --- | --- | --- | --- | --- |'];
  for (const method of METHODS) {
    const descriptor = METHOD_TABLE[method];
    const regularizer = descriptor.regularizer === null ? '-' : `${REGULARIZERS[descriptor.regularizer].description} (${REGULARIZERS[descriptor.regularizer].strength})`;
    rows.push(`| \`${method}\` | ${descriptor.subModel ? 'yes' : 'no'} | ${cell(regularizer)} | ${cell(describeDefaultRatio(method))} | ${cell(descriptor.description)} |`);
  }
  return rows.join('\n');
}

/** The markers around each generated table in the README. */
export const README_TABLES = {
  settings: settingsMarkdown,
  methods: methodsMarkdown,
} as const;

/**
 * The README with every generated table replaced by its current text; throws when a marker pair
 * is missing, so a README edit that loses one is noticed.
 */
export function updateReadme(readme: string): string {
  let text = readme;
  for (const [name, render] of Object.entries(README_TABLES)) {
    const start = `<!-- ${name}:start (generated by npm run docs:settings; do not edit) -->`;
    const end = `<!-- ${name}:end -->`;
    const from = text.indexOf(start);
    const to = text.indexOf(end);
    if (from === -1 || to === -1 || to < from) throw new Error(`README: the ${name} table's markers are missing (${start} ... ${end})`);
    text = `${text.slice(0, from + start.length)}\n${render()}\n${text.slice(to)}`;
  }
  return text;
}
