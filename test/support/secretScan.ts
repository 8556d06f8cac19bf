/**
 * The secrets audit's scanner: every secret value a test used, in the forms it could leak in
 * (as is, base64/base64url, URL-encoded, JSON-escaped, inside an HTTP Basic `user:secret`
 * header, hex and raw bytes for keys), looked for in any text or bytes. A form is matched by any
 * 20-character window of it, so a secret cut short (a log line truncated, a message limited to
 * 500 characters) is still found; a window never lies entirely in a fixed prefix (the
 * `x-access-token:` of a Basic header), so a hit always carries secret-derived characters.
 */

/** Windows this long (or whole forms, when shorter) are what the scanner matches. */
const windowLength = 20;

/** The user names a token is paired with in an HTTP Basic header (GitHub, GitLab, plain hosts). */
const defaultBasicUsers = ['x-access-token', 'oauth2', 'git'];

export interface SecretOptions {
  /** More Basic-auth user names the secret may be sent with (a plain host's login). */
  basicUsers?: string[];
  /** A key: also its bytes as hex, base64url and raw. */
  bytes?: Buffer;
  /** The one place (a `where` passed to scan) that may show the secret: a response that hands it out once. */
  designated?: string;
}

export interface Finding {
  secret: string;
  form: string;
  channel: string;
  where: string;
}

interface Form {
  secret: string;
  form: string;
}

export class SecretScanner {
  private readonly windows = new Map<string, Form>();
  private readonly shortForms: { text: string; form: Form }[] = [];
  private readonly designated = new Map<string, string>();
  private readonly values = new Map<string, string>();
  /** What was scanned, per channel: pieces (lines, responses, files…) and bytes. */
  readonly scanned = new Map<string, { pieces: number; bytes: number }>();

  /** Registers a secret; registering the same value again under another name is a test mistake. */
  add(name: string, value: string, options: SecretOptions = {}): void {
    if (value.length < 8) throw new Error(`secret ${name} is too short to be audited (${value.length} characters)`);
    const existing = this.values.get(name);
    if (existing !== undefined) {
      if (existing !== value) throw new Error(`secret ${name} registered twice with different values`);
      return;
    }
    this.values.set(name, value);
    if (options.designated) this.designated.set(name, options.designated);
    const forms: [string, string, number][] = [
      ['as is', value, 0],
      ['base64', Buffer.from(value).toString('base64').replace(/=+$/, ''), 0],
      ['base64url', Buffer.from(value).toString('base64url'), 0],
      ['URL-encoded', encodeURIComponent(value), 0],
      ['form-encoded', new URLSearchParams({ v: value }).toString().slice(2), 0],
      ['JSON-escaped', JSON.stringify(value).slice(1, -1), 0],
    ];
    for (const user of new Set([...defaultBasicUsers, ...(options.basicUsers ?? [])])) {
      const prefix = Buffer.byteLength(`${user}:`);
      // Characters before this index encode (part of) the user name only.
      const firstSecretChar = Math.ceil(prefix / 3) * 4;
      forms.push([`Basic ${user}:…`, Buffer.from(`${user}:${value}`).toString('base64').replace(/=+$/, ''), firstSecretChar]);
    }
    if (options.bytes) {
      forms.push(['hex', options.bytes.toString('hex'), 0], ['base64url', options.bytes.toString('base64url'), 0], ['raw bytes', options.bytes.toString('latin1'), 0]);
    }
    for (const [form, text, start] of forms) {
      const entry = { secret: name, form };
      if (text.length - start < windowLength) {
        this.shortForms.push({ text: text.slice(start), form: entry });
        continue;
      }
      for (let index = start; index + windowLength <= text.length; index++) {
        const window = text.slice(index, index + windowLength);
        if (!this.windows.has(window)) this.windows.set(window, entry);
      }
    }
  }

  names(): string[] {
    return [...this.values.keys()];
  }

  get size(): number {
    return this.values.size;
  }

  designatedPlace(name: string): string | undefined {
    return this.designated.get(name);
  }

  /** Every secret found in `content` (text, or bytes read as latin1), once per secret and form. */
  scan(channel: string, where: string, content: string | Buffer): Finding[] {
    const text = typeof content === 'string' ? content : content.toString('latin1');
    const count = this.scanned.get(channel) ?? { pieces: 0, bytes: 0 };
    count.pieces++;
    count.bytes += typeof content === 'string' ? Buffer.byteLength(content) : content.length;
    this.scanned.set(channel, count);
    const found = new Map<string, Finding>();
    const note = (form: Form) => found.set(`${form.secret}\0${form.form}`, { ...form, channel, where });
    this.match(text, note);
    // UTF-8 bytes read as latin1 hide a non-ASCII secret: such content is read as UTF-8 as well.
    if (typeof content !== 'string' && /[^\x00-\x7f]/.test(text)) this.match(content.toString('utf8'), note);
    return [...found.values()];
  }

  private match(text: string, note: (form: Form) => void): void {
    for (let index = 0; index + windowLength <= text.length; index++) {
      const form = this.windows.get(text.slice(index, index + windowLength));
      if (form) note(form);
    }
    for (const { text: short, form } of this.shortForms) if (text.includes(short)) note(form);
  }
}

/** A finding as a line for an assertion message: never the secret itself. */
export function describeFinding(finding: Finding): string {
  return `${finding.secret} (${finding.form}) in ${finding.channel}: ${finding.where}`;
}
