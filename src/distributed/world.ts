// Which process of a data-parallel job this is, read from the environment that launchers set:
// torchrun (and our `train --nproc`) set RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
// MASTER_ADDR and MASTER_PORT; SLURM's srun sets SLURM_PROCID, SLURM_NTASKS and SLURM_LOCALID
// (MASTER_ADDR / MASTER_PORT then come from the job script, as for a PyTorch script under srun).

import type { Device } from '../tensor/tensor.js';

/** One process's place in a data-parallel job. */
export interface World {
  rank: number;
  size: number;
  /** The rank among the processes of this machine (the GPU index it uses on a GPU machine). */
  localRank: number;
  localSize: number;
  /** Where rank 0 serves the rendezvous store. */
  masterAddr: string;
  masterPort: number;
}

/** A launcher's environment that does not describe a valid job. */
export class WorldError extends Error {}

function integer(env: NodeJS.ProcessEnv, name: string, minimum: number): number | undefined {
  const text = env[name];
  if (text === undefined || text.trim() === '') return undefined;
  if (!/^\s*\d+\s*$/.test(text) || Number(text) < minimum) {
    throw new WorldError(`${name}='${text}' is not an integer >= ${minimum}`);
  }
  return Number(text);
}

/**
 * The job this process belongs to, or null when it runs alone (no WORLD_SIZE / SLURM_NTASKS, or a
 * world of one). Throws WorldError naming the variable that is missing or wrong.
 */
export function worldFromEnvironment(env: NodeJS.ProcessEnv = process.env): World | null {
  const torchrun = env.WORLD_SIZE !== undefined && env.WORLD_SIZE.trim() !== '';
  const prefix = torchrun ? '' : 'SLURM_';
  const size = torchrun ? integer(env, 'WORLD_SIZE', 1) : integer(env, 'SLURM_NTASKS', 1);
  if (size === undefined || size === 1) return null;
  const rankName = torchrun ? 'RANK' : 'SLURM_PROCID';
  const rank = integer(env, rankName, 0);
  if (rank === undefined) throw new WorldError(`${prefix ? 'SLURM_NTASKS' : 'WORLD_SIZE'}=${size} is set but ${rankName} is not`);
  if (rank >= size) throw new WorldError(`${rankName}=${rank} is not below the world size ${size}`);
  const localRank = integer(env, torchrun ? 'LOCAL_RANK' : 'SLURM_LOCALID', 0) ?? 0;
  const localSize = integer(env, torchrun ? 'LOCAL_WORLD_SIZE' : 'SLURM_NTASKS_PER_NODE', 1) ?? size;
  const masterAddr = env.MASTER_ADDR?.trim();
  if (!masterAddr) throw new WorldError(`a job of ${size} processes needs MASTER_ADDR (the address of rank 0's machine)`);
  const masterPort = integer(env, 'MASTER_PORT', 1);
  if (masterPort === undefined) throw new WorldError(`a job of ${size} processes needs MASTER_PORT (a free TCP port on rank 0's machine)`);
  if (masterPort > 65535) throw new WorldError(`MASTER_PORT=${masterPort} is not a TCP port (1-65535)`);
  return { rank, size, localRank, localSize, masterAddr, masterPort };
}

/**
 * The device this rank trains on: `cuda` means the GPU numbered LOCAL_RANK on this machine, as a
 * torchrun script's `torch.cuda.set_device(local_rank)` does, so N ranks of one machine use N
 * GPUs; `cuda:N` given explicitly is kept (every rank then uses GPU N: for jobs whose launcher
 * gives each rank one visible GPU, CUDA_VISIBLE_DEVICES); `cpu` stays.
 */
export function rankDevice(device: string, world: Pick<World, 'localRank'> | null): Device {
  return (device === 'cuda' && world !== null ? `cuda:${world.localRank}` : device) as Device;
}
