import * as zlib from 'node:zlib';

const { deflateRawSync } = zlib;

/** CRC-32 (ISO-HDLC, the zip one) for Node releases before zlib.crc32 (22.2): a byte-at-a-time table. */
export function crc32Portable(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) crc = CRC_TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
const crc32: (data: Uint8Array) => number = (zlib as { crc32?: (data: Uint8Array) => number }).crc32 ?? crc32Portable;

/**
 * A minimal zip writer (PKWARE APPNOTE 6.3.x, sections 4.3.7, 4.3.12, 4.3.16): one local header and data per file,
 * then the central directory and its end record. Deflate (method 8) where it helps, else stored (method 0). No zip64:
 * the deploy package is a few hundred kilobytes, so a size or count past the 32/16-bit fields is refused.
 * Written here rather than taken from a dependency: the package is three files, and the `zip` binary is not on every
 * machine that builds.
 */
export interface ZipEntry {
  /** Path inside the archive, `/`-separated, relative. */
  readonly name: string;
  readonly data: Uint8Array;
  /** Unix permission bits; defaults to 0o644. */
  readonly mode?: number;
}

// 1980-01-01 00:00, the earliest MS-DOS time: every build of the same files gives the same bytes.
const DOS_TIME = 0;
const DOS_DATE = (0 << 9) | (1 << 5) | 1;
const UTF8_NAMES = 0x0800;
const VERSION = 20;
const MADE_BY_UNIX = (3 << 8) | VERSION;

export function zip(entries: readonly ZipEntry[]): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  const seen = new Set<string>();
  let offset = 0;
  for (const entry of entries) {
    if (entry.name === '' || entry.name.startsWith('/') || entry.name.split('/').includes('..') || entry.name.includes('\\')) {
      throw new TypeError(`zip: "${entry.name}" is not a relative path inside the archive`);
    }
    if (seen.has(entry.name)) throw new TypeError(`zip: "${entry.name}" is listed twice`);
    seen.add(entry.name);
    const name = Buffer.from(entry.name, 'utf8');
    const deflated = deflateRawSync(entry.data, { level: 9 });
    const method = deflated.length < entry.data.length ? 8 : 0;
    const body = method === 8 ? deflated : Buffer.from(entry.data);
    const crc = crc32(entry.data);
    if (entry.data.length > 0xffffffff || offset > 0xffffffff) throw new RangeError('zip: over 4 GiB needs zip64, which this writer does not write');

    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(VERSION, 4);
    local.writeUInt16LE(UTF8_NAMES, 6);
    local.writeUInt16LE(method, 8);
    local.writeUInt16LE(DOS_TIME, 10);
    local.writeUInt16LE(DOS_DATE, 12);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(entry.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(0, 28);

    const header = Buffer.alloc(46);
    header.writeUInt32LE(0x02014b50, 0);
    header.writeUInt16LE(MADE_BY_UNIX, 4);
    header.writeUInt16LE(VERSION, 6);
    header.writeUInt16LE(UTF8_NAMES, 8);
    header.writeUInt16LE(method, 10);
    header.writeUInt16LE(DOS_TIME, 12);
    header.writeUInt16LE(DOS_DATE, 14);
    header.writeUInt32LE(crc, 16);
    header.writeUInt32LE(body.length, 20);
    header.writeUInt32LE(entry.data.length, 24);
    header.writeUInt16LE(name.length, 28);
    // extra, comment, disk number start, internal attributes: 0
    header.writeUInt32LE((((entry.mode ?? 0o644) | 0o100000) << 16) >>> 0, 38);
    header.writeUInt32LE(offset, 42);

    parts.push(local, name, body);
    central.push(header, name);
    offset += local.length + name.length + body.length;
  }
  if (entries.length > 0xffff) throw new RangeError('zip: over 65,535 files needs zip64, which this writer does not write');
  const directory = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...parts, directory, end]);
}
