/**
 * `npm run package`: dist/app.zip, what `az functionapp deployment source config-zip --src dist/app.zip` uploads.
 * It holds the bundle (package.json `main`) and the chunks it loads on demand, its third-party notices, host.json and a package.json trimmed to what
 * the host reads (`main`, `type`, `engines`): no dependencies, so no node_modules and nothing for a remote build
 * to install. Run after `npm run build`.
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BUNDLE, bundleFiles, NOTICES, REPO } from './bundle.js';
import { zip, type ZipEntry } from './zip.js';

export const APP_ZIP = 'dist/app.zip';

interface Manifest {
  name: string;
  version: string;
  description?: string;
  license?: string;
  type?: string;
  main?: string;
  engines?: Record<string, string>;
}

/** The package.json the deployed app gets: the host and the worker read `main` and `type`, nothing else of it. */
export function deployManifest(manifest: Manifest): Manifest {
  if (manifest.main !== BUNDLE) throw new TypeError(`package.json main must be ${BUNDLE} (the bundle), not ${manifest.main}`);
  const { name, version, description, license, type, main, engines } = manifest;
  return { name, version, ...(description !== undefined && { description }), ...(license !== undefined && { license }), type, main, ...(engines !== undefined && { engines }) };
}

export function packageApp(repo = REPO): { file: string; bytes: number; files: number } {
  const read = (path: string) => {
    try {
      return readFileSync(join(repo, path));
    } catch {
      throw new Error(`${path} is missing: run \`npm run build\` first`);
    }
  };
  const manifest = deployManifest(JSON.parse(read('package.json').toString('utf8')) as Manifest);
  const entries: ZipEntry[] = [
    { name: 'host.json', data: read('host.json') },
    { name: 'package.json', data: Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`) },
    ...bundleFiles(repo).map((name) => ({ name, data: read(name) })),
    { name: NOTICES, data: read(NOTICES) },
  ];
  const file = join(repo, APP_ZIP);
  writeFileSync(file, zip(entries));
  return { file, bytes: statSync(file).size, files: entries.length };
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { bytes, files } = packageApp();
  process.stdout.write(`${APP_ZIP}: ${Math.round(bytes / 1024)} KiB, ${files} files\n`);
}
