// torch.distributed for this package: the job's world from the launcher's environment, the
// process group (c10d Gloo), and the local launcher of `train --nproc`.
export * from './world.js';
export * from './process-group.js';
export * from './launch.js';
