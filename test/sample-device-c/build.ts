/**
 * Builds the C sample (sample-device-c/) with CMake into sample-device-c/build/<variant> (gitignored), once per run:
 * test files run in parallel workers, so a lock directory lets one worker build while the others wait; a later call
 * is an incremental `cmake --build` that finds nothing to do. .ci/run needs nothing beyond the Debian packages
 * (cmake build-essential libpaho-mqtt-dev libssl-dev libcjson-dev valgrind).
 */
import { execFile } from 'node:child_process';
import { mkdir, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const C_SOURCE = resolve(import.meta.dirname, '../../sample-device-c');

export interface CBuild {
  readonly buildDir: string;
  /** The device program. */
  readonly bin: string;
  /** The test-only vectors tool (tools/vectors.c). */
  readonly vectors: string;
}

export async function buildCSample(variant: 'release' | 'sanitize' = 'release'): Promise<CBuild> {
  const buildDir = join(C_SOURCE, 'build', variant);
  await mkdir(join(C_SOURCE, 'build'), { recursive: true });
  const lock = join(C_SOURCE, 'build', `.lock-${variant}`);
  const deadline = Date.now() + 300_000;
  for (;;) {
    try {
      await mkdir(lock);
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`${lock} held for 5 minutes; remove it if no build is running`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  try {
    const configured = await stat(join(buildDir, 'CMakeCache.txt')).then(() => true, () => false);
    if (!configured) {
      await run('cmake', [
        '-S', C_SOURCE, '-B', buildDir,
        '-DCMAKE_BUILD_TYPE=RelWithDebInfo',
        '-DCMAKE_EXPORT_COMPILE_COMMANDS=ON',
        `-DSAMPLE_DEVICE_SANITIZE=${variant === 'sanitize' ? 'ON' : 'OFF'}`,
      ]);
    }
    await run('cmake', ['--build', buildDir, '-j', '2'], { maxBuffer: 16 * 1024 * 1024 });
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
  return { buildDir, bin: join(buildDir, 'sample-device-c'), vectors: join(buildDir, 'sample-device-c-vectors') };
}
