/** A multipart/form-data body, parsed in place: parts are views of the request buffer, nothing is copied. */
export interface FormData {
  readonly fields: ReadonlyMap<string, string>;
  readonly files: ReadonlyMap<string, FormFile>;
}

export interface FormFile {
  readonly filename: string;
  readonly contentType: string | undefined;
  readonly data: Buffer;
}

export class MultipartError extends Error {}

/** The boundary of a `multipart/form-data` content type, or undefined when it is not one. */
export function multipartBoundary(contentType: string | undefined): string | undefined {
  if (!contentType) return undefined;
  const [media, ...params] = contentType.split(';');
  if (media!.trim().toLowerCase() !== 'multipart/form-data') return undefined;
  for (const p of params) {
    const eq = p.indexOf('=');
    if (eq < 0 || p.slice(0, eq).trim().toLowerCase() !== 'boundary') continue;
    let v = p.slice(eq + 1).trim();
    if (v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
    return v || undefined;
  }
  return undefined;
}

function param(header: string, name: string): string | undefined {
  const m = new RegExp(`(?:^|;)\\s*${name}="((?:[^"\\\\]|\\\\.)*)"`, 'i').exec(header) ?? new RegExp(`(?:^|;)\\s*${name}=([^;]*)`, 'i').exec(header);
  return m ? m[1]!.replace(/\\(.)/g, '$1').trim() : undefined;
}

/** Parses `body` (RFC 7578) with `boundary`; throws MultipartError on a malformed body. */
export function parseMultipart(body: Buffer, boundary: string): FormData {
  const fields = new Map<string, string>();
  const files = new Map<string, FormFile>();
  const delim = Buffer.from(`--${boundary}`);
  const next = Buffer.from(`\r\n--${boundary}`);
  let pos = body.indexOf(delim);
  if (pos < 0) throw new MultipartError('multipart body has no boundary line');
  pos += delim.length;
  for (;;) {
    if (body[pos] === 0x2d && body[pos + 1] === 0x2d) break;
    if (body[pos] !== 0x0d || body[pos + 1] !== 0x0a) throw new MultipartError('malformed multipart boundary line');
    pos += 2;
    const headEnd = body.indexOf('\r\n\r\n', pos);
    if (headEnd < 0) throw new MultipartError('multipart part without headers end');
    const headers = new Map<string, string>();
    for (const line of body.toString('utf8', pos, headEnd).split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    const start = headEnd + 4;
    const end = body.indexOf(next, start);
    if (end < 0) throw new MultipartError('multipart body ends before its closing boundary');
    const disposition = headers.get('content-disposition') ?? '';
    const name = param(disposition, 'name');
    if (name === undefined) throw new MultipartError('multipart part without a name');
    const filename = param(disposition, 'filename');
    const data = body.subarray(start, end);
    if (filename !== undefined) files.set(name, { filename, contentType: headers.get('content-type'), data });
    else fields.set(name, data.toString('utf8'));
    pos = end + next.length;
  }
  return { fields, files };
}
