/**
 * `npm run build`, second step: one esbuild bundle of the trigger, the file package.json `main` names and the deploy
 * zip carries. Every dependency is inside it (the Functions host loads `main` with no node_modules beside it),
 * except `@azure/functions-core`, which no registry publishes: the Node.js worker provides it at run time by
 * intercepting require (Azure/azure-functions-nodejs-library#201; the worker's setupCoreModule).
 * Beside it, THIRD-PARTY-NOTICES.txt: the license of every package the bundle includes, which their licenses ask
 * for when their code is redistributed.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Metafile } from 'esbuild';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Relative to the repository and to the root of the deploy zip; package.json `main` names it. */
export const BUNDLE = 'dist/bundle/validatejwt.js';
export const NOTICES = 'dist/bundle/THIRD-PARTY-NOTICES.txt';
/**
 * The code the trigger loads only on demand (a dynamic import: the Key Vault client, the replay table, the telemetry
 * exporter), split into files of its own beside the bundle, so a start that does not need it never reads or parses
 * it: without APPLICATIONINSIGHTS_CONNECTION_STRING OpenTelemetry is not even read from disk.
 */
export const CHUNKS = 'dist/bundle/chunks';

/** The files a deploy ships from dist/bundle: the bundle, then its chunks (relative to the repository). */
export function bundleFiles(repo = REPO): string[] {
  const dir = join(repo, CHUNKS);
  const chunks = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.js')).sort().map((f) => `${CHUNKS}/${f}`) : [];
  return [BUNDLE, ...chunks];
}

export async function bundleTrigger(repo = REPO): Promise<{ bytes: number; packages: number; chunks: number }> {
  const outfile = join(repo, BUNDLE);
  // Chunks are named by content hash: an earlier build's would stay behind and be shipped.
  rmSync(join(repo, CHUNKS), { recursive: true, force: true });
  const result = await build({
    absWorkingDir: repo,
    entryPoints: { validatejwt: 'functions/validatejwt.ts' },
    outdir: dirname(outfile),
    splitting: true,
    chunkNames: 'chunks/[name]-[hash]',
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node22',
    external: ['@azure/functions-core'],
    // The CommonJS packages inside (the Functions library, the Azure SDK's dependencies) call require for Node's
    // built-ins and for @azure/functions-core; an ES module has no require of its own. (Every chunk gets the banner.)
    banner: { js: "import { createRequire as __bundleRequire } from 'node:module'; const require = __bundleRequire(import.meta.url);" },
    // Whitespace and syntax only: a third smaller and quicker to load, while names in a stack trace stay readable.
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: 'none',
    metafile: true,
    logLevel: 'warning',
  });
  const packages = writeNotices(repo, result.metafile);
  return { bytes: readFileSync(outfile).length, packages, chunks: bundleFiles(repo).length - 1 };
}

function packageRoot(repo: string, input: string): string | undefined {
  const at = input.lastIndexOf('node_modules/');
  if (at < 0) return undefined;
  const rest = input.slice(at + 'node_modules/'.length).split('/');
  const name = rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  return join(repo, input.slice(0, at), 'node_modules', name);
}

function writeNotices(repo: string, meta: Metafile): number {
  const roots = new Set<string>();
  for (const input of Object.keys(meta.inputs)) {
    const root = packageRoot(repo, input);
    if (root !== undefined) roots.add(root);
  }
  const sections: string[] = [];
  for (const root of [...roots].sort()) {
    const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { name: string; version: string; license?: string };
    const licenseFile = readdirSync(root).find((f) => /^(licen[cs]e|copying)(\.|$)/i.test(f));
    const text = licenseFile !== undefined ? readFileSync(join(root, licenseFile), 'utf8').trim() : `License: ${manifest.license ?? 'see the package'}`;
    sections.push(`${manifest.name} ${manifest.version} (${relative(repo, root)})\n\n${text}`);
  }
  const file = join(repo, NOTICES);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `The deploy bundle (${BUNDLE}) includes the following packages.\n\n${sections.join(`\n\n${'-'.repeat(78)}\n\n`)}\n`);
  return roots.size;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { bytes, packages, chunks } = await bundleTrigger();
  if (!existsSync(join(REPO, BUNDLE))) throw new Error(`esbuild wrote no ${BUNDLE}`);
  process.stdout.write(`${BUNDLE}: ${Math.round(bytes / 1024)} KiB and ${chunks} chunks loaded on demand (${CHUNKS}), ${packages} packages inside (licenses: ${NOTICES})\n`);
}
