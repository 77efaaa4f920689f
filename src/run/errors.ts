// The error of the run layer: a problem with a run directory or its files that the user can act on
// (the CLI prints its message without a stack trace and exits 1).
export class RunError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RunError';
  }
}
