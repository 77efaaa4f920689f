// Training progress: a live bar (loss, samples/s, ETA) on a terminal, plain lines otherwise.
// Samples are images, or texts for the text models ("img/s", "texts/s").
import type { EpochMetrics } from '../run/format.js';

const format = (seconds: number): string => {
  if (!Number.isFinite(seconds)) return '?';
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds % 60);
  return m ? `${m}m${String(s).padStart(2, '0')}s` : `${s}s`;
};

export class Progress {
  private readonly interactive: boolean;
  private epoch = 0;
  private epochs = 0;
  private total = 0;
  private started = 0;
  private lastLine = 0;

  constructor(private readonly log: (line: string) => void, stream: NodeJS.WriteStream = process.stderr, private readonly unit: 'img' | 'texts' = 'img') {
    this.interactive = Boolean(stream.isTTY);
  }

  start(epoch: number, epochs: number, total: number): void {
    this.epoch = epoch;
    this.epochs = epochs;
    this.total = total;
    this.started = performance.now();
    this.lastLine = this.started;
  }

  update(done: number, loss: number, imagesPerSecond: number): void {
    const now = performance.now();
    const elapsed = (now - this.started) / 1000;
    const eta = (elapsed / done) * (this.total - done);
    if (this.interactive) {
      const width = 24;
      const filled = Math.round((width * done) / this.total);
      const bar = '#'.repeat(filled) + '.'.repeat(width - filled);
      process.stderr.write(`\repoch ${this.epoch}/${this.epochs} [${bar}] ${done}/${this.total} loss ${loss.toFixed(4)} ${imagesPerSecond.toFixed(0)} ${this.unit}/s ETA ${format(eta)}   `);
    } else if (now - this.lastLine > 30000) {
      this.lastLine = now;
      this.log(`epoch ${this.epoch}/${this.epochs} step ${done}/${this.total} loss ${loss.toFixed(4)} ${imagesPerSecond.toFixed(0)} ${this.unit}/s ETA ${format(eta)}`);
    }
  }

  finish(row: EpochMetrics): void {
    if (this.interactive) process.stderr.write('\n');
    const sub = row.train_loss_sub === null ? '' : ` sub ${row.train_loss_sub.toFixed(4)}`;
    this.log(`epoch ${row.epoch}/${this.epochs} loss ${row.train_loss.toFixed(4)} (main ${row.train_loss_main.toFixed(4)}${sub}) ` +
      `test acc1 ${row.test_acc1.toFixed(2)}% acc5 ${row.test_acc5.toFixed(2)}% ${row.images_per_s.toFixed(0)} ${this.unit}/s ${format(row.wall_s)}`);
  }
}
