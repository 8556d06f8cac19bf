import { gzipSync } from 'node:zlib';

/**
 * Hand-built tar archives for adversarial tests (no tar-stream here): ustar
 * headers written field by field, so an archive can say anything a hostile
 * one could — `..` paths, absolute paths, links, devices, pax and GNU
 * long-name records, lying sizes, broken checksums.
 */
export interface CraftEntry {
  name: string;
  /** ustar type flag: '0' file, '1' hard link, '2' symlink, '3' char device, '4' block device, '5' directory, '6' FIFO, '7' contiguous, 'x' pax, 'L' GNU long name. */
  type?: string;
  linkname?: string;
  mode?: number;
  body?: Buffer | string;
  /** Declared size when it must differ from the body (a lie, or a body that follows in other gzip members). */
  size?: number;
  devmajor?: number;
  devminor?: number;
  /** Corrupts the header checksum. */
  badChecksum?: boolean;
}

function octal(value: number, length: number): string {
  return value.toString(8).padStart(length - 1, '0') + '\0';
}

export function tarHeader(entry: CraftEntry): Buffer {
  const header = Buffer.alloc(512, 0);
  const body = entry.body === undefined ? Buffer.alloc(0) : Buffer.from(entry.body);
  const size = entry.size ?? body.length;
  const type = entry.type ?? '0';
  const write = (text: string, offset: number, length: number, encoding: BufferEncoding = 'utf8') => {
    header.write(text.slice(0, length), offset, length, encoding);
  };
  write(entry.name, 0, 100);
  write(octal(entry.mode ?? (type === '5' ? 0o755 : 0o644), 8), 100, 8);
  write(octal(0, 8), 108, 8);
  write(octal(0, 8), 116, 8);
  write(octal(size, 12), 124, 12);
  write(octal(1_700_000_000, 12), 136, 12);
  write('        ', 148, 8);
  write(type, 156, 1);
  write(entry.linkname ?? '', 157, 100);
  write('ustar\0', 257, 6, 'latin1');
  write('00', 263, 2);
  write('root', 265, 32);
  write('root', 297, 32);
  write(octal(entry.devmajor ?? 0, 8), 329, 8);
  write(octal(entry.devminor ?? 0, 8), 337, 8);
  let sum = 0;
  for (const byte of header) sum += byte;
  if (entry.badChecksum) sum += 1;
  write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  return header;
}

function padded(body: Buffer): Buffer {
  const rest = body.length % 512;
  return rest === 0 ? body : Buffer.concat([body, Buffer.alloc(512 - rest, 0)]);
}

/** A pax extended header record set ("<len> key=value\n", len counting itself). */
export function paxBody(records: Record<string, string>): string {
  let text = '';
  for (const [key, value] of Object.entries(records)) {
    const payload = ` ${key}=${value}\n`;
    let length = Buffer.byteLength(payload) + 1;
    while (String(length).length + Buffer.byteLength(payload) !== length) length = String(length).length + Buffer.byteLength(payload);
    text += `${length}${payload}`;
  }
  return text;
}

/** Headers and bodies in order, then (unless `end: false`) the two zero blocks that end an archive. */
export function craftTar(entries: CraftEntry[], options: { end?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    parts.push(tarHeader(entry));
    if (entry.body !== undefined) parts.push(padded(Buffer.from(entry.body)));
  }
  if (options.end !== false) parts.push(Buffer.alloc(1024, 0));
  return Buffer.concat(parts);
}

export function craftTarGz(entries: CraftEntry[], options: { end?: boolean } = {}): Buffer {
  return gzipSync(craftTar(entries, options));
}

/**
 * `mebibytes` MiB of zero bytes as concatenated gzip members (one 1 MiB member
 * compressed once, repeated): about 1 KB of gzip per MiB it expands to.
 */
export function gzipZeros(mebibytes: number): Buffer {
  const member = gzipSync(Buffer.alloc(1024 * 1024, 0), { level: 9 });
  return Buffer.concat(Array.from({ length: mebibytes }, () => member));
}
