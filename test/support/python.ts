/**
 * The pinned Python virtual environments the suite drives real Python clients from (the official azure-iot-device
 * SDK, the Azure CLI). tools/python-env.sh makes each once, cached by its requirements' hash; .ci/run makes them ahead
 * so their install shows in its log, and a plain `npm test` makes them on first use.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const made = new Map<string, string>();

export type PythonEnvName = 'requirements-device' | 'requirements-azure-cli' | 'requirements-sample-device-py';

/** The venv's bin directory, making the venv if it is not there yet (minutes for azure-cli, once). */
export function pythonEnvBin(name: PythonEnvName): string {
  let bin = made.get(name);
  if (bin === undefined) {
    bin = execFileSync(join(repo, 'tools/python-env.sh'), [join(repo, 'python', `${name}.txt`)], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      timeout: 15 * 60_000,
    }).trim();
    made.set(name, bin);
  }
  return bin;
}
