/**
 * Decodes an OTLP `ExportTraceServiceRequest` (opentelemetry-proto, trace/v1/trace.proto) from protobuf into the
 * shape of its OTLP/JSON encoding (camelCase fields, hex ids, 64-bit integers as decimal strings), so that the
 * collector hands its tests one shape whatever the exporter sent. The SDK ships an encoder only.
 */

const enum Wire {
  Varint = 0,
  Fixed64 = 1,
  Bytes = 2,
  Fixed32 = 5,
}

interface Field {
  readonly no: number;
  readonly wire: Wire;
  /** Varint and fixed values. */
  readonly int: bigint;
  readonly bytes: Buffer;
}

function* fields(buf: Buffer): Generator<Field> {
  let i = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (i >= buf.length) throw new Error('protobuf: truncated varint');
      const b = buf[i++];
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
    }
  };
  const empty = Buffer.alloc(0);
  while (i < buf.length) {
    const key = Number(varint());
    const no = key >>> 3;
    const wire = (key & 7) as Wire;
    switch (wire) {
      case Wire.Varint:
        yield { no, wire, int: varint(), bytes: empty };
        break;
      case Wire.Fixed64:
        yield { no, wire, int: buf.readBigUInt64LE(i), bytes: buf.subarray(i, i + 8) };
        i += 8;
        break;
      case Wire.Fixed32:
        yield { no, wire, int: BigInt(buf.readUInt32LE(i)), bytes: buf.subarray(i, i + 4) };
        i += 4;
        break;
      case Wire.Bytes: {
        const len = Number(varint());
        if (i + len > buf.length) throw new Error('protobuf: truncated field');
        yield { no, wire, int: 0n, bytes: buf.subarray(i, i + len) };
        i += len;
        break;
      }
      default:
        throw new Error(`protobuf: unsupported wire type ${String(wire)}`);
    }
  }
}

type Json = Record<string, unknown>;

function signed64(v: bigint): bigint {
  return BigInt.asIntN(64, v);
}

function anyValue(buf: Buffer): Json {
  for (const f of fields(buf)) {
    switch (f.no) {
      case 1:
        return { stringValue: f.bytes.toString('utf8') };
      case 2:
        return { boolValue: f.int !== 0n };
      case 3:
        return { intValue: signed64(f.int).toString() };
      case 4:
        return { doubleValue: f.bytes.readDoubleLE(0) };
      case 5:
        return { arrayValue: { values: [...fields(f.bytes)].filter((v) => v.no === 1).map((v) => anyValue(v.bytes)) } };
      case 6:
        return { kvlistValue: { values: [...fields(f.bytes)].filter((v) => v.no === 1).map((v) => keyValue(v.bytes)) } };
      case 7:
        return { bytesValue: f.bytes.toString('base64') };
    }
  }
  return {};
}

function keyValue(buf: Buffer): Json {
  let key = '';
  let value: Json = {};
  for (const f of fields(buf)) {
    if (f.no === 1) key = f.bytes.toString('utf8');
    else if (f.no === 2) value = anyValue(f.bytes);
  }
  return { key, value };
}

function attributesOf(buf: Buffer, no = 1): Json[] {
  return [...fields(buf)].filter((f) => f.no === no && f.wire === Wire.Bytes).map((f) => keyValue(f.bytes));
}

function status(buf: Buffer): Json {
  const out: Json = { code: 0 };
  for (const f of fields(buf)) {
    if (f.no === 2) out.message = f.bytes.toString('utf8');
    else if (f.no === 3) out.code = Number(f.int);
  }
  return out;
}

function event(buf: Buffer): Json {
  const out: Json = { attributes: [] as Json[] };
  for (const f of fields(buf)) {
    if (f.no === 1) out.timeUnixNano = f.int.toString();
    else if (f.no === 2) out.name = f.bytes.toString('utf8');
    else if (f.no === 3) (out.attributes as Json[]).push(keyValue(f.bytes));
  }
  return out;
}

function link(buf: Buffer): Json {
  const out: Json = { attributes: [] as Json[] };
  for (const f of fields(buf)) {
    if (f.no === 1) out.traceId = f.bytes.toString('hex');
    else if (f.no === 2) out.spanId = f.bytes.toString('hex');
    else if (f.no === 4) (out.attributes as Json[]).push(keyValue(f.bytes));
  }
  return out;
}

function span(buf: Buffer): Json {
  const out: Json = { attributes: [] as Json[], events: [] as Json[], links: [] as Json[], kind: 0 };
  for (const f of fields(buf)) {
    switch (f.no) {
      case 1:
        out.traceId = f.bytes.toString('hex');
        break;
      case 2:
        out.spanId = f.bytes.toString('hex');
        break;
      case 3:
        out.traceState = f.bytes.toString('utf8');
        break;
      case 4:
        out.parentSpanId = f.bytes.toString('hex');
        break;
      case 5:
        out.name = f.bytes.toString('utf8');
        break;
      case 6:
        out.kind = Number(f.int);
        break;
      case 7:
        out.startTimeUnixNano = f.int.toString();
        break;
      case 8:
        out.endTimeUnixNano = f.int.toString();
        break;
      case 9:
        (out.attributes as Json[]).push(keyValue(f.bytes));
        break;
      case 11:
        (out.events as Json[]).push(event(f.bytes));
        break;
      case 13:
        (out.links as Json[]).push(link(f.bytes));
        break;
      case 15:
        out.status = status(f.bytes);
        break;
      case 16:
        out.flags = Number(f.int);
        break;
    }
  }
  return out;
}

function scopeSpans(buf: Buffer): Json {
  const out: Json = { scope: {}, spans: [] as Json[] };
  for (const f of fields(buf)) {
    if (f.no === 1) {
      const scope: Json = {};
      for (const s of fields(f.bytes)) {
        if (s.no === 1) scope.name = s.bytes.toString('utf8');
        else if (s.no === 2) scope.version = s.bytes.toString('utf8');
      }
      out.scope = scope;
    } else if (f.no === 2) (out.spans as Json[]).push(span(f.bytes));
    else if (f.no === 3) out.schemaUrl = f.bytes.toString('utf8');
  }
  return out;
}

function resourceSpans(buf: Buffer): Json {
  const out: Json = { resource: { attributes: [] }, scopeSpans: [] as Json[] };
  for (const f of fields(buf)) {
    if (f.no === 1) out.resource = { attributes: attributesOf(f.bytes) };
    else if (f.no === 2) (out.scopeSpans as Json[]).push(scopeSpans(f.bytes));
    else if (f.no === 3) out.schemaUrl = f.bytes.toString('utf8');
  }
  return out;
}

/** An `ExportTraceServiceRequest` in protobuf, as its OTLP/JSON object. */
export function decodeTraceRequest(buf: Buffer): { resourceSpans: Json[] } {
  return { resourceSpans: [...fields(buf)].filter((f) => f.no === 1).map((f) => resourceSpans(f.bytes)) };
}
