// Reads back what a chart SVG written by the report (vega's SVG renderer) plots: every data mark
// with the fields vega writes into its aria-label and its position, and every axis's labels with
// theirs. Tests use it to compare the plotted numbers with results.json and the run files.

export interface PlottedMark {
  /** The item's fields as vega labels them (field name or axis title -> formatted value). */
  fields: Record<string, string>;
  x: number;
  y: number;
}

export interface MarkGroup {
  /** vega's mark type: symbol, rect, rule, line, area, text. */
  kind: string;
  /** vega's name of the mark, e.g. layer_1_layer_1_marks. */
  name: string;
  marks: PlottedMark[];
}

export interface AxisLabel { text: string; x: number; y: number }

const ENTITIES: Record<string, string> = { '&amp;': '&', '&lt;': '<', '&gt;': '>', '&quot;': '"', '&#39;': "'" };
const decode = (text: string): string => text.replace(/&(amp|lt|gt|quot|#39);/g, (entity) => ENTITIES[entity] ?? entity);

function attributes(tag: string): Record<string, string> {
  const result: Record<string, string> = {};
  for (const match of tag.matchAll(/([\w:-]+)="([^"]*)"/g)) result[match[1]] = decode(match[2]);
  return result;
}

function translation(transform: string | undefined): [number, number] {
  const match = /translate\(([-\d.e+]+),([-\d.e+]+)\)/.exec(transform ?? '');
  return match ? [Number(match[1]), Number(match[2])] : [0, 0];
}

/** "epoch: 1; mean: 68.1; method: baseline" -> { epoch: '1', mean: '68.1', method: 'baseline' } */
function ariaFields(label: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const part of label.split('; ')) {
    const colon = part.indexOf(': ');
    if (colon > 0) fields[part.slice(0, colon)] = part.slice(colon + 2);
  }
  return fields;
}

/** The data marks of a chart, one group per vega mark, in document order. */
export function markGroups(svg: string): MarkGroup[] {
  const groups: MarkGroup[] = [];
  for (const match of svg.matchAll(/<g class="mark-(\w+) role-mark ([^"]+)"[^>]*>([\s\S]*?)<\/g>/g)) {
    const marks: PlottedMark[] = [];
    for (const item of match[3].matchAll(/<(?:path|line|text)\b([^>]*)>/g)) {
      const attrs = attributes(item[1]);
      if (attrs['aria-label'] === undefined) continue;
      const [x, y] = translation(attrs.transform);
      marks.push({ fields: ariaFields(attrs['aria-label']), x, y });
    }
    groups.push({ kind: match[1], name: match[2], marks });
  }
  return groups;
}

/** The labels of every axis, one list per axis, in document order. */
export function axisLabels(svg: string): AxisLabel[][] {
  const axes: AxisLabel[][] = [];
  for (const match of svg.matchAll(/<g class="mark-text role-axis-label"[^>]*>([\s\S]*?)<\/g>/g)) {
    const labels: AxisLabel[] = [];
    for (const text of match[1].matchAll(/<text\b([^>]*)>([^<]*)<\/text>/g)) {
      const [x, y] = translation(attributes(text[1]).transform);
      labels.push({ text: decode(text[2]), x, y });
    }
    axes.push(labels);
  }
  return axes;
}
