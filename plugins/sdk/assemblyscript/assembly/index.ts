// The Sluice transform SDK for AssemblyScript (ABI v1, docs/abi.md).
//
// A transform registers two functions and re-exports the ABI:
//
//   import { Record, Output, Value, register } from "../../sdk/assemblyscript/assembly/index";
//   export * from "../../sdk/assemblyscript/assembly/abi";
//
//   function init(config: Value): string | null { ...; return null }
//   function process(r: Record, out: Output): string | null {
//     r.setString("site", "lab-1");
//     out.emit(r);
//     return null;
//   }
//   register(init, process);
//
// process runs once per input record and calls out.emit once per output (not
// at all to filter the record, several times to split it). Returning a string
// fails the record with that message; what it emitted is discarded.
//
// The field helpers work on the record's UTF-8 JSON bytes: the first to run
// indexes the top-level fields in one pass, and a setter splices the new
// bytes in and moves the index along. No JSON string is built and nothing is
// parsed into a tree. Every Value and Record handed to process points into
// buffers that are reused: it is valid until process returns. See README.md.

// ---------------------------------------------------------------- host

// @ts-ignore: decorator
@external("sluice", "log")
declare function hostLog(level: i32, ptr: usize, len: i32): void;

/** Writes a message to Sluice's log: 0 debug, 1 info, 2 warn, 3 error. */
export function log(level: i32, msg: string): void {
  const buf = String.UTF8.encode(msg);
  hostLog(level, changetype<usize>(buf), buf.byteLength);
}

/** The abort handler (asc --use abort=...): logs the message and traps. */
export function sluiceAbort(msg: string | null, file: string | null, line: u32, col: u32): void {
  log(3, "abort: " + (msg ? msg : "") + " at " + (file ? file : "?") + ":" + line.toString() + ":" + col.toString());
  unreachable();
}

// ---------------------------------------------------------------- scratch memory

// Bump allocation in one block, reset before every callback; when a callback
// needs more, the old blocks live until the reset, which replaces them all by
// one block big enough for next time.
let arenaBase: usize = 0;
let arenaCap: usize = 0;
let arenaUsed: usize = 0;
const arenaOld: usize[] = [];

/** Scratch memory valid until the current callback returns. */
export function scratch(n: usize): usize {
  n = (n + 7) & ~(<usize>7);
  if (arenaCap - arenaUsed < n) {
    let cap = arenaCap ? arenaCap * 2 : 65536;
    while (cap < n) cap *= 2;
    if (arenaBase) arenaOld.push(arenaBase);
    arenaBase = heap.alloc(cap);
    arenaCap = cap;
    arenaUsed = 0;
  }
  const p = arenaBase + arenaUsed;
  arenaUsed += n;
  return p;
}

function scratchReset(): void {
  if (arenaOld.length) {
    for (let i = 0; i < arenaOld.length; i++) heap.free(arenaOld[i]);
    arenaOld.length = 0;
  }
  arenaUsed = 0;
}

// ---------------------------------------------------------------- JSON scanning

// @ts-ignore: decorator
@inline function isWS(c: u32): bool {
  return c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D;
}

// @ts-ignore: decorator
@inline function skipWS(p: usize, e: usize): usize {
  if (p < e && load<u8>(p) > 0x20) return p; // compact JSON: no whitespace
  while (p < e && isWS(load<u8>(p))) p++;
  return p;
}

// A mask with the high bit of every byte of w that is '"' or '\\' (the classic
// has-zero-byte test); its lowest set bit is exact, so ctz finds the first.
// @ts-ignore: decorator
@inline function quoteOrBackslash(w: u64): u64 {
  const q = w ^ 0x2222222222222222;
  const b = w ^ 0x5C5C5C5C5C5C5C5C;
  return (((q - 0x0101010101010101) & ~q) | ((b - 0x0101010101010101) & ~b)) & 0x8080808080808080;
}

// Whether the string skipString skipped last has escapes.
let skippedEscape = false;

// p at '"'; returns the position after the closing quote, or 0, and sets
// skippedEscape. Plain runs are skipped eight bytes at a time.
function skipString(p: usize, e: usize): usize {
  skippedEscape = false;
  p++;
  while (p + 8 <= e) {
    const m = quoteOrBackslash(load<u64>(p));
    if (!m) {
      p += 8;
      continue;
    }
    p += <usize>(ctz(m) >> 3);
    if (load<u8>(p) == 0x22) return p + 1;
    skippedEscape = true;
    p += 2;
  }
  for (; p < e; p++) {
    const c = load<u8>(p);
    if (c == 0x22) return p + 1;
    if (c == 0x5C) {
      skippedEscape = true;
      p++;
    }
  }
  return 0;
}

// Returns the end of the JSON value at p, or 0. The text is trusted to be
// valid JSON (the host checks every value it reads).
function skipValue(p: usize, e: usize): usize {
  if (p >= e) return 0;
  const c0 = load<u8>(p);
  if (c0 == 0x22) return skipString(p, e);
  if (c0 == 0x7B || c0 == 0x5B) {
    let depth = 0;
    while (p < e) {
      const c = load<u8>(p);
      if (c == 0x22) {
        p = skipString(p, e);
        if (!p) return 0;
        continue;
      }
      if (c == 0x7B || c == 0x5B) depth++;
      else if (c == 0x7D || c == 0x5D) {
        if (--depth == 0) return p + 1;
      }
      p++;
    }
    return 0;
  }
  // a number, true, false or null: its characters are digits, lowercase
  // letters, '-', '+', '.' and 'E'
  const s = p;
  while (p < e) {
    const c = <u32>load<u8>(p);
    if (!(c - 0x61 < 26 || c - 0x30 < 10 || c == 0x2D || c == 0x2E || c == 0x2B || c == 0x45)) break;
    p++;
  }
  return p == s ? 0 : p;
}

function hexVal(c: u32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

function hex4(p: usize, e: usize): u32 {
  if (e - p < 4) return 0xFFFD;
  let v: u32 = 0;
  for (let i: usize = 0; i < 4; i++) {
    const h = hexVal(load<u8>(p + i));
    if (h < 0) return 0xFFFD;
    v = (v << 4) | <u32>h;
  }
  return v;
}

function putUTF8(o: usize, c: u32): usize {
  if (c < 0x80) {
    store<u8>(o++, c);
  } else if (c < 0x800) {
    store<u8>(o++, 0xC0 | (c >> 6));
    store<u8>(o++, 0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    store<u8>(o++, 0xE0 | (c >> 12));
    store<u8>(o++, 0x80 | ((c >> 6) & 0x3F));
    store<u8>(o++, 0x80 | (c & 0x3F));
  } else {
    store<u8>(o++, 0xF0 | (c >> 18));
    store<u8>(o++, 0x80 | ((c >> 12) & 0x3F));
    store<u8>(o++, 0x80 | ((c >> 6) & 0x3F));
    store<u8>(o++, 0x80 | (c & 0x3F));
  }
  return o;
}

// Decodes the JSON string body [s, e) into o (room for e-s bytes: decoding
// never grows the text). Lone surrogates become U+FFFD. Returns the length.
function unescape(s: usize, e: usize, o: usize): usize {
  const start = o;
  while (s < e) {
    const c = load<u8>(s);
    if (c != 0x5C) {
      store<u8>(o++, c);
      s++;
      continue;
    }
    const x = load<u8>(s + 1);
    s += 2;
    if (x == 0x62) store<u8>(o++, 0x08);
    else if (x == 0x66) store<u8>(o++, 0x0C);
    else if (x == 0x6E) store<u8>(o++, 0x0A);
    else if (x == 0x72) store<u8>(o++, 0x0D);
    else if (x == 0x74) store<u8>(o++, 0x09);
    else if (x == 0x75) {
      let u = hex4(s, e);
      s = e - s >= 4 ? s + 4 : e;
      if (u >= 0xD800 && u < 0xDC00) {
        if (e - s >= 6 && load<u8>(s) == 0x5C && load<u8>(s + 1) == 0x75) {
          const lo = hex4(s + 2, e);
          if (lo >= 0xDC00 && lo < 0xE000) {
            u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            s += 6;
          } else u = 0xFFFD;
        } else u = 0xFFFD;
      } else if (u >= 0xDC00 && u < 0xE000) u = 0xFFFD;
      o = putUTF8(o, u);
    } else store<u8>(o++, x); // \" \\ \/
  }
  return o - start;
}

function hasByte(p: usize, e: usize, b: u8): bool {
  for (; p < e; p++) if (load<u8>(p) == b) return true;
  return false;
}

// Whether the UTF-8 bytes [p, p+n) spell the string s.
function bytesEqualString(p: usize, n: usize, s: string): bool {
  const len = s.length;
  // The ASCII prefix of s compares byte for byte; an ASCII name needs no encoding.
  let i = 0;
  for (; i < len; i++) {
    const c = <u32>s.charCodeAt(i);
    if (c >= 0x80) break;
    if (<usize>i >= n || <u32>load<u8>(p + <usize>i) != c) return false;
  }
  if (i == len) return <usize>len == n;
  const enc = String.UTF8.encode(s);
  if (<usize>enc.byteLength != n) return false;
  return memory.compare(p, changetype<usize>(enc), n) == 0;
}

// Compares the raw key body [k, ke) with name.
function keyEquals(k: usize, ke: usize, name: string): bool {
  if (!hasByte(k, ke, 0x5C)) return bytesEqualString(k, ke - k, name);
  const tmp = scratch(ke - k);
  return bytesEqualString(tmp, unescape(k, ke, tmp), name);
}

// The value of the member findMember found last.
let memberVal: usize = 0;
let memberValEnd: usize = 0;

// Finds the first member called name in the object [p, e); its value is
// then [memberVal, memberValEnd).
function findMember(p: usize, e: usize, name: string): bool {
  p = skipWS(p, e);
  if (p >= e || load<u8>(p) != 0x7B) return false;
  p++;
  while (true) {
    p = skipWS(p, e);
    if (p >= e || load<u8>(p) != 0x22) return false;
    const key = p;
    const keyEnd = skipString(p, e);
    if (!keyEnd) return false;
    p = skipWS(keyEnd, e);
    if (p >= e || load<u8>(p) != 0x3A) return false;
    const val = skipWS(p + 1, e);
    const valEnd = skipValue(val, e);
    if (!valEnd) return false;
    if (keyEquals(key + 1, keyEnd - 1, name)) {
      memberVal = val;
      memberValEnd = valEnd;
      return true;
    }
    p = skipWS(valEnd, e);
    if (p < e && load<u8>(p) == 0x2C) p++;
  }
  return false;
}

// ---------------------------------------------------------------- values

/** The kind of a JSON value; Missing: no such field. */
export enum Kind {
  Missing = 0,
  Null,
  Bool,
  Number,
  String,
  Array,
  Object,
}

/**
 * One raw JSON value: a view of UTF-8 bytes in a record or the config, valid
 * until the callback that received it returns (toJSON() copies it).
 */
export class Value {
  constructor(public ptr: usize, public len: usize) {}

  get kind(): Kind {
    if (!this.len) return Kind.Missing;
    const c = load<u8>(this.ptr);
    if (c == 0x7B) return Kind.Object;
    if (c == 0x5B) return Kind.Array;
    if (c == 0x22) return Kind.String;
    if (c == 0x74 || c == 0x66) return Kind.Bool;
    if (c == 0x6E) return Kind.Null;
    return Kind.Number;
  }

  /** The number, or NaN when the value is not a JSON number (or is too large for f64). */
  asNumber(): f64 {
    return parseNumber(this.ptr, this.len);
  }

  /** The decoded string, or null when the value is not a JSON string. */
  asString(): string | null {
    if (this.kind != Kind.String || this.len < 2) return null;
    const s = this.ptr + 1;
    const e = this.ptr + this.len - 1;
    if (!hasByte(s, e, 0x5C)) return String.UTF8.decodeUnsafe(s, e - s);
    const tmp = scratch(e - s);
    return String.UTF8.decodeUnsafe(tmp, unescape(s, e, tmp));
  }

  /** true for JSON true; false otherwise (check kind for Bool first). */
  asBool(): bool {
    return this.len == 4 && load<u32>(this.ptr) == 0x65757274; // "true"
  }

  /** A member of this object (the first with that name), or null. */
  get(name: string): Value | null {
    if (!findMember(this.ptr, this.ptr + this.len, name)) return null;
    return new Value(memberVal, memberValEnd - memberVal);
  }

  /** The members of this object in document order (none when it is not an object). */
  members(): Field[] {
    const out: Field[] = [];
    const e = this.ptr + this.len;
    let p = skipWS(this.ptr, e);
    if (p >= e || load<u8>(p) != 0x7B) return out;
    p++;
    while (true) {
      p = skipWS(p, e);
      if (p < e && load<u8>(p) == 0x2C) p = skipWS(p + 1, e);
      if (p >= e || load<u8>(p) != 0x22) return out;
      const keyEnd = skipString(p, e);
      if (!keyEnd) return out;
      let q = skipWS(keyEnd, e);
      if (q >= e || load<u8>(q) != 0x3A) return out;
      q = skipWS(q + 1, e);
      const valEnd = skipValue(q, e);
      if (!valEnd) return out;
      out.push(new Field(new Value(p, keyEnd - p).asString()!, new Value(q, valEnd - q)));
      p = valEnd;
    }
    return out;
  }

  /** The elements of this array (none when it is not an array). */
  elements(): Value[] {
    const out: Value[] = [];
    const e = this.ptr + this.len;
    let p = skipWS(this.ptr, e);
    if (p >= e || load<u8>(p) != 0x5B) return out;
    p++;
    while (true) {
      p = skipWS(p, e);
      if (p < e && load<u8>(p) == 0x2C) p = skipWS(p + 1, e);
      if (p >= e || load<u8>(p) == 0x5D) return out;
      const q = skipValue(p, e);
      if (!q) return out;
      out.push(new Value(p, q - p));
      p = q;
    }
  }

  /** The value's JSON text, as a string. */
  toJSON(): string {
    return String.UTF8.decodeUnsafe(this.ptr, this.len);
  }
}

/** A member of a JSON object: its decoded name and its value. */
export class Field {
  constructor(public name: string, public value: Value) {}
}

/** A record header: views of its name and value bytes, valid until process returns. */
export class Header {
  constructor(public namePtr: usize, public nameLen: usize, public valuePtr: usize, public valueLen: usize) {}

  /** The name, decoded from UTF-8. */
  get name(): string {
    return String.UTF8.decodeUnsafe(this.namePtr, this.nameLen);
  }

  /** The value, decoded from UTF-8 (an invalid sequence becomes U+FFFD). */
  get value(): string {
    return String.UTF8.decodeUnsafe(this.valuePtr, this.valueLen);
  }
}

// ---------------------------------------------------------------- records

/**
 * A record: its JSON document (value), Kafka key, destination and headers,
 * all UTF-8 bytes. clone() makes an independent copy for the parts of a split.
 *
 * The field helpers share one index of the top-level fields, built by the
 * first of them to run and kept up to date by the edits, so that a record's
 * bytes are scanned once however many fields are read and written.
 *
 * An edit that cannot be made (the value is not a JSON object, a number is
 * not finite) returns false and marks the record: emitting it then fails the
 * input record with `error`.
 */
export class Record {
  /** The JSON document's bytes; change them with setValue. */
  valuePtr: usize = 0;
  valueLen: usize = 0;
  keyPtr: usize = 0;
  keyLen: usize = 0;
  destPtr: usize = 0;
  destLen: usize = 0;
  headerCount: u32 = 0;
  headersPtr: usize = 0; // the headers in the ABI's encoding
  headersLen: usize = 0;
  /** The first edit that failed, or null. */
  error: string | null = null;

  // The field index: FIELD u32s per field (key body, value, has escapes),
  // offsets from valuePtr.
  private ixValid: bool = false;
  private ixObject: bool = false;
  private ixOpen: u32 = 0;
  private ixN: i32 = 0;
  private ix: StaticArray<u32> = new StaticArray<u32>(16 * FIELD);

  clone(): Record {
    const r = new Record();
    r.valuePtr = this.valuePtr;
    r.valueLen = this.valueLen;
    r.keyPtr = this.keyPtr;
    r.keyLen = this.keyLen;
    r.destPtr = this.destPtr;
    r.destLen = this.destLen;
    r.headerCount = this.headerCount;
    r.headersPtr = this.headersPtr;
    r.headersLen = this.headersLen;
    r.error = this.error;
    r.ixValid = this.ixValid;
    r.ixObject = this.ixObject;
    r.ixOpen = this.ixOpen;
    r.ixN = this.ixN;
    r.ix = StaticArray.slice<u32>(this.ix);
    return r;
  }

  /** Makes the record's document the bytes [ptr, ptr+len). */
  setValue(ptr: usize, len: usize): void {
    this.valuePtr = ptr;
    this.valueLen = len;
    this.ixValid = false;
  }

  /** The whole JSON document. */
  get value(): Value {
    return new Value(this.valuePtr, this.valueLen);
  }

  /** The Kafka key ("" means not set). */
  get key(): string {
    return String.UTF8.decodeUnsafe(this.keyPtr, this.keyLen);
  }
  set key(k: string) {
    this.keyLen = encodeInto(k);
    this.keyPtr = lastEncoded;
  }
  /** Sets the key to the bytes [ptr, ptr+len) without a string. */
  setKeyBytes(ptr: usize, len: usize): void {
    this.keyPtr = ptr;
    this.keyLen = len;
  }

  /** The destination: Kafka topic or ClickHouse table ("" means the sink's). */
  get dest(): string {
    return String.UTF8.decodeUnsafe(this.destPtr, this.destLen);
  }
  set dest(d: string) {
    this.destLen = encodeInto(d);
    this.destPtr = lastEncoded;
  }

  /** The headers, in order (a name may repeat); views valid until process returns. */
  headers(): Header[] {
    const out: Header[] = [];
    let p = this.headersPtr;
    for (let h: u32 = 0; h < this.headerCount; h++) {
      const nameLen = <usize>load<u32>(p);
      const v = p + 4 + nameLen;
      const valueLen = <usize>load<u32>(v);
      out.push(new Header(p + 4, nameLen, v + 4, valueLen));
      p = v + 4 + valueLen;
    }
    return out;
  }

  /** The first header called name (names match byte for byte), or null. */
  findHeader(name: string): Header | null {
    let p = this.headersPtr;
    for (let h: u32 = 0; h < this.headerCount; h++) {
      const nameLen = <usize>load<u32>(p);
      const v = p + 4 + nameLen;
      const valueLen = <usize>load<u32>(v);
      if (bytesEqualString(p + 4, nameLen, name)) return new Header(p + 4, nameLen, v + 4, valueLen);
      p = v + 4 + valueLen;
    }
    return null;
  }

  /** The value of the first header called name, decoded from UTF-8, or null. */
  header(name: string): string | null {
    const h = this.findHeader(name);
    return h ? h.value : null;
  }

  /** Sets the first header called name to value (as UTF-8), adding it at the end when there is none. */
  setHeader(name: string, value: string): void {
    const len = encodeInto(value);
    this.setHeaderBytes(name, lastEncoded, len);
  }

  /** Sets the first header called name to a copy of the bytes [ptr, ptr+len),
   * adding it at the end when there is none. */
  setHeaderBytes(name: string, ptr: usize, len: usize): void {
    // The headers are kept in the ABI's encoding; an edit writes a new copy
    // in scratch memory, so a clone made before keeps its own.
    const start = this.headersPtr;
    const end = start + this.headersLen;
    let p = start;
    let at: usize = 0; // the first match's value (its u32 length), to atEnd
    let atEnd: usize = 0;
    for (let h: u32 = 0; h < this.headerCount && !at; h++) {
      const nameLen = <usize>load<u32>(p);
      const v = p + 4 + nameLen;
      const vEnd = v + 4 + <usize>load<u32>(v);
      if (bytesEqualString(p + 4, nameLen, name)) {
        at = v;
        atEnd = vEnd;
      }
      p = vEnd;
    }
    let n: usize, o: usize;
    if (at) {
      n = this.headersLen - (atEnd - at) + 4 + len;
      o = scratch(n);
      memory.copy(o, start, at - start);
      putBytes(o + (at - start), ptr, len);
      memory.copy(o + (at - start) + 4 + len, atEnd, end - atEnd);
    } else {
      const nameLen = encodeInto(name);
      const namePtr = lastEncoded;
      n = this.headersLen + 8 + nameLen + len;
      o = scratch(n);
      memory.copy(o, start, this.headersLen);
      putBytes(putBytes(o + this.headersLen, namePtr, nameLen), ptr, len);
      this.headerCount++;
    }
    this.headersPtr = o;
    this.headersLen = n;
  }

  /** Removes every header called name; returns whether there was one. */
  deleteHeader(name: string): bool {
    const hs = this.headers();
    let kept: usize = 0;
    let keptLen: usize = 0;
    for (let i = 0; i < hs.length; i++) {
      const h = hs[i];
      if (!bytesEqualString(h.namePtr, h.nameLen, name)) {
        kept++;
        keptLen += 8 + h.nameLen + h.valueLen;
      }
    }
    if (kept == <usize>hs.length) return false;
    const o = scratch(keptLen);
    let w = o;
    for (let i = 0; i < hs.length; i++) {
      const h = hs[i];
      if (!bytesEqualString(h.namePtr, h.nameLen, name)) w = putBytes(putBytes(w, h.namePtr, h.nameLen), h.valuePtr, h.valueLen);
    }
    this.headersPtr = o;
    this.headersLen = keptLen;
    this.headerCount = <u32>kept;
    return true;
  }

  /** A top-level field (the first with that name), or null. */
  get(name: string): Value | null {
    const j = this.find(name);
    if (j < 0) return null;
    const v0 = unchecked(this.ix[j * FIELD + 2]);
    return new Value(this.valuePtr + v0, unchecked(this.ix[j * FIELD + 3]) - v0);
  }

  has(name: string): bool {
    return this.find(name) >= 0;
  }

  /** The field as a number, or NaN when it is missing or not a number. */
  getNumber(name: string): f64 {
    const j = this.find(name);
    if (j < 0) return NaN;
    const v0 = unchecked(this.ix[j * FIELD + 2]);
    return parseNumber(this.valuePtr + v0, unchecked(this.ix[j * FIELD + 3]) - v0);
  }

  /** The field as a string, or null when it is missing or not a string. */
  getString(name: string): string | null {
    const v = this.get(name);
    return v ? v.asString() : null;
  }

  /** Sets a field to raw JSON bytes [ptr, ptr+len) (trusted to be valid
   * JSON): in place when present, else appended at the end of the object. */
  setRawBytes(name: string, ptr: usize, len: usize): bool {
    if (!this.index()) return this.fail(NOT_OBJECT);
    const j = this.find(name);
    if (j >= 0) {
      const v0 = unchecked(this.ix[j * FIELD + 2]);
      const v1 = unchecked(this.ix[j * FIELD + 3]);
      this.splice(v0, v1, ptr, len, 0, 0);
      unchecked((this.ix[j * FIELD + 3] = v0 + <u32>len));
      this.shift(j + 1, <i32>len - <i32>(v1 - v0));
      return true;
    }
    // ,"name":json after the last value (or "name":json after '{')
    const n = this.ixN;
    const at = n ? unchecked(this.ix[(n - 1) * FIELD + 3]) : this.ixOpen + 1;
    const key = scratch(quotedMax(name) + 2);
    let k = key;
    if (n) store<u8>(k++, 0x2C);
    const k0 = at + <u32>(k - key) + 1;
    k = quoteString(name, k);
    const k1 = at + <u32>(k - key) - 1;
    const esc = hasByte(key + (k0 - at), key + (k1 - at), 0x5C);
    store<u8>(k++, 0x3A);
    const v0 = at + <u32>(k - key);
    this.splice(at, at, key, k - key, ptr, len);
    this.push(k0, k1, v0, v0 + <u32>len, esc);
    return true;
  }

  setRaw(name: string, v: Value): bool {
    return this.setRawBytes(name, v.ptr, v.len);
  }

  setString(name: string, s: string): bool {
    const q = scratch(quotedMax(s));
    return this.setRawBytes(name, q, quoteString(s, q) - q);
  }

  /** Sets a number, written as formatNumber does; fails for NaN and infinities. */
  setNumber(name: string, v: f64): bool {
    const p = scratch(32);
    const n = formatNumber(v, p);
    if (!n) return this.fail("sluice: set \"" + name + "\": " + (isNaN(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf") + " has no JSON form");
    return this.setRawBytes(name, p, n);
  }

  setBool(name: string, v: bool): bool {
    const p = scratch(5);
    if (v) {
      store<u32>(p, 0x65757274); // true
      return this.setRawBytes(name, p, 4);
    }
    store<u32>(p, 0x736C6166); // fals
    store<u8>(p + 4, 0x65);
    return this.setRawBytes(name, p, 5);
  }

  /** Removes a field; returns whether it was there. */
  delete(name: string): bool {
    if (!this.index()) {
      this.fail(NOT_OBJECT);
      return false;
    }
    const j = this.find(name);
    if (j < 0) return false;
    const ix = this.ix;
    let a: u32, z: u32;
    if (j > 0) {
      // from the previous value's end: `, "name": value`
      a = unchecked(ix[(j - 1) * FIELD + 3]);
      z = unchecked(ix[j * FIELD + 3]);
    } else if (this.ixN > 1) {
      // the first of several: `"name": value, ` up to the next key
      a = unchecked(ix[0]) - 1;
      z = unchecked(ix[FIELD]) - 1;
    } else {
      // the only field
      a = unchecked(ix[0]) - 1;
      z = unchecked(ix[3]);
    }
    this.splice(a, z, 0, 0, 0, 0);
    for (let i = j * FIELD; i < (this.ixN - 1) * FIELD; i++) unchecked((ix[i] = ix[i + FIELD]));
    this.ixN--;
    this.shift(j, -<i32>(z - a));
    return true;
  }

  /** Resets the record to an input's bytes (the SDK reuses one Record). */
  reset(): void {
    this.error = null;
    this.ixValid = false;
  }

  private fail(msg: string): bool {
    if (this.error === null) this.error = msg;
    return false;
  }

  // Makes the index describe the value; returns whether it is an object.
  private index(): bool {
    if (this.ixValid) return this.ixObject;
    this.ixValid = true;
    this.ixObject = false;
    this.ixN = 0;
    const b = this.valuePtr;
    const e = b + this.valueLen;
    let p = skipWS(b, e);
    if (p >= e || load<u8>(p) != 0x7B) return false;
    this.ixOpen = <u32>(p - b);
    p = skipWS(p + 1, e);
    if (p < e && load<u8>(p) == 0x7D) return (this.ixObject = true);
    while (p < e && load<u8>(p) == 0x22) {
      const ke = skipString(p, e);
      if (!ke) return false;
      const esc = skippedEscape;
      const k0 = p + 1;
      p = skipWS(ke, e);
      if (p >= e || load<u8>(p) != 0x3A) return false;
      p = skipWS(p + 1, e);
      const ve = skipValue(p, e);
      if (!ve) return false;
      this.push(<u32>(k0 - b), <u32>(ke - 1 - b), <u32>(p - b), <u32>(ve - b), esc);
      p = skipWS(ve, e);
      if (p < e && load<u8>(p) == 0x2C) p = skipWS(p + 1, e);
      else return (this.ixObject = p < e && load<u8>(p) == 0x7D);
    }
    return false;
  }

  private push(k0: u32, k1: u32, v0: u32, v1: u32, esc: bool): void {
    let i = this.ixN * FIELD;
    if (i + FIELD > this.ix.length) {
      const grown = new StaticArray<u32>(this.ix.length * 2);
      memory.copy(changetype<usize>(grown), changetype<usize>(this.ix), <usize>i << 2);
      this.ix = grown;
    }
    const ix = this.ix;
    unchecked((ix[i++] = k0));
    unchecked((ix[i++] = k1));
    unchecked((ix[i++] = v0));
    unchecked((ix[i++] = v1));
    unchecked((ix[i] = esc ? 1 : 0));
    this.ixN++;
  }

  // The first field called name, or -1.
  private find(name: string): i32 {
    if (!this.index()) return -1;
    const ix = this.ix;
    const b = this.valuePtr;
    for (let j = 0; j < this.ixN; j++) {
      const k0 = b + unchecked(ix[j * FIELD]);
      const k1 = b + unchecked(ix[j * FIELD + 1]);
      if (unchecked(ix[j * FIELD + 4]) ? keyEquals(k0, k1, name) : bytesEqualString(k0, k1 - k0, name)) return j;
    }
    return -1;
  }

  // Moves the fields from j on by delta bytes.
  private shift(j: i32, delta: i32): void {
    const ix = this.ix;
    for (let i = j * FIELD; i < this.ixN * FIELD; i += FIELD) {
      unchecked((ix[i] += delta));
      unchecked((ix[i + 1] += delta));
      unchecked((ix[i + 2] += delta));
      unchecked((ix[i + 3] += delta));
    }
  }

  // Replaces bytes [a, z) of the value with the bytes p then q, in a new
  // value in scratch memory.
  private splice(a: u32, z: u32, p: usize, plen: usize, q: usize, qlen: usize): void {
    const tail = this.valueLen - <usize>z;
    const n = <usize>a + plen + qlen + tail;
    const o = scratch(n);
    memory.copy(o, this.valuePtr, a);
    memory.copy(o + a, p, plen);
    memory.copy(o + a + plen, q, qlen);
    memory.copy(o + a + plen + qlen, this.valuePtr + z, tail);
    this.valuePtr = o;
    this.valueLen = n;
  }
}

const FIELD = 5;
const NOT_OBJECT = "sluice: value is not a JSON object";

let lastEncoded: usize = 0;

// Encodes s as UTF-8 into scratch memory at lastEncoded; returns the length.
function encodeInto(s: string): usize {
  const n = <usize>String.UTF8.byteLength(s);
  lastEncoded = scratch(n);
  String.UTF8.encodeUnsafe(changetype<usize>(s), s.length, lastEncoded);
  return n;
}

function quotedMax(s: string): usize {
  return <usize>s.length * 6 + 2;
}

const HEX = "0123456789abcdef";

// Writes s as a JSON string at o: UTF-8, escaping '"', '\\', \n, \r, \t and
// other control characters (as \u00XX); a lone surrogate becomes \ufffd, as
// invalid UTF-8 does in the Go SDK. Returns the end.
function quoteString(s: string, o: usize): usize {
  store<u8>(o++, 0x22);
  const len = s.length;
  for (let i = 0; i < len; i++) {
    let c = <u32>s.charCodeAt(i);
    if (c >= 0x20 && c < 0x80 && c != 0x22 && c != 0x5C) {
      store<u8>(o++, c);
      continue;
    }
    if (c >= 0x80) {
      if (c >= 0xD800 && c < 0xDC00 && i + 1 < len) {
        const lo = <u32>s.charCodeAt(i + 1);
        if (lo >= 0xDC00 && lo < 0xE000) {
          o = putUTF8(o, 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00));
          i++;
          continue;
        }
      }
      if (c >= 0xD800 && c < 0xE000) {
        store<u8>(o++, 0x5C);
        store<u8>(o++, 0x75);
        store<u32>(o, 0x64666666); // "fffd"
        o += 4;
        continue;
      }
      o = putUTF8(o, c);
      continue;
    }
    store<u8>(o++, 0x5C);
    if (c == 0x22 || c == 0x5C) store<u8>(o++, c);
    else if (c == 0x0A) store<u8>(o++, 0x6E);
    else if (c == 0x0D) store<u8>(o++, 0x72);
    else if (c == 0x09) store<u8>(o++, 0x74);
    else {
      store<u8>(o++, 0x75);
      store<u8>(o++, 0x30);
      store<u8>(o++, 0x30);
      store<u8>(o++, HEX.charCodeAt(c >> 4));
      store<u8>(o++, HEX.charCodeAt(c & 15));
    }
  }
  store<u8>(o++, 0x22);
  return o;
}

// ---------------------------------------------------------------- numbers

// Big unsigned integers (little-endian 32-bit limbs) for the exact paths.
class Big {
  n: i32 = 0;
  d: StaticArray<u32>;
  constructor(cap: i32) {
    this.d = new StaticArray<u32>(cap);
  }
  setU64(v: u64): Big {
    this.n = 0;
    while (v) {
      unchecked((this.d[this.n++] = <u32>v));
      v >>= 32;
    }
    return this;
  }
  copyFrom(o: Big): Big {
    for (let i = 0; i < o.n; i++) unchecked((this.d[i] = o.d[i]));
    this.n = o.n;
    return this;
  }
  mulSmall(m: u32): void {
    let carry: u64 = 0;
    for (let i = 0; i < this.n; i++) {
      const t = <u64>unchecked(this.d[i]) * m + carry;
      unchecked((this.d[i] = <u32>t));
      carry = t >> 32;
    }
    if (carry) this.d[this.n++] = <u32>carry;
  }
  addSmall(a: u32): void {
    let carry: u64 = a;
    for (let i = 0; i < this.n && carry; i++) {
      const t = <u64>unchecked(this.d[i]) + carry;
      unchecked((this.d[i] = <u32>t));
      carry = t >> 32;
    }
    if (carry) this.d[this.n++] = <u32>carry;
  }
  mulPow10(k: i32): void {
    for (; k >= 9; k -= 9) this.mulSmall(1000000000);
    if (k > 0) this.mulSmall(<u32>ipow10(k));
  }
  shl(bits: i32): void {
    if (!this.n || bits <= 0) return;
    const limbs = bits >> 5;
    const s = bits & 31;
    if (s) {
      let carry: u32 = 0;
      for (let i = 0; i < this.n; i++) {
        const v = unchecked(this.d[i]);
        unchecked((this.d[i] = (v << s) | carry));
        carry = v >> (32 - s);
      }
      if (carry) this.d[this.n++] = carry;
    }
    if (limbs) {
      for (let i = this.n - 1; i >= 0; i--) this.d[i + limbs] = unchecked(this.d[i]);
      for (let i = 0; i < limbs; i++) unchecked((this.d[i] = 0));
      this.n += limbs;
    }
  }
  cmp(o: Big): i32 {
    if (this.n != o.n) return this.n < o.n ? -1 : 1;
    for (let i = this.n - 1; i >= 0; i--) {
      const a = unchecked(this.d[i]);
      const b = unchecked(o.d[i]);
      if (a != b) return a < b ? -1 : 1;
    }
    return 0;
  }
  // out = this + o
  addTo(o: Big, out: Big): void {
    const n = max(this.n, o.n);
    let carry: u64 = 0;
    for (let i = 0; i < n; i++) {
      const t = carry + <u64>(i < this.n ? unchecked(this.d[i]) : 0) + <u64>(i < o.n ? unchecked(o.d[i]) : 0);
      unchecked((out.d[i] = <u32>t));
      carry = t >> 32;
    }
    out.n = n;
    if (carry) out.d[out.n++] = <u32>carry;
  }
  // this -= o, with this >= o
  sub(o: Big): void {
    let borrow: i64 = 0;
    for (let i = 0; i < this.n; i++) {
      let t = <i64>unchecked(this.d[i]) - <i64>(i < o.n ? unchecked(o.d[i]) : 0) - borrow;
      borrow = t < 0 ? 1 : 0;
      unchecked((this.d[i] = <u32>(t + (borrow << 32))));
    }
    while (this.n && !unchecked(this.d[this.n - 1])) this.n--;
  }
}

function ipow10(k: i32): u64 {
  let v: u64 = 1;
  for (let i = 0; i < k; i++) v *= 10;
  return v;
}

const POW10: StaticArray<f64> = [
  1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
  1e20, 1e21, 1e22,
];

const digitBuf = new StaticArray<u8>(24);
const fastTmp = new StaticArray<u8>(20);
let digitPoint: i32 = 0; // value = 0.digits × 10^digitPoint

// Fast path: the integer n of at most 15 digits with n / 10^j == v, each
// candidate checked with exactly rounded arithmetic (n < 2^53 and
// 10^|j| <= 10^22 are exact). At 15 digits or fewer at most one candidate
// reads back as v, so the first found is the shortest. Returns the digit
// count, or 0 when v needs 16 or 17 digits.
function shortestFast(v: f64): i32 {
  const k = <i32>Math.floor(Math.log10(v));
  for (let p = 1; p <= 15; p++) {
    const j = p - 1 - k;
    if (j > 22 || j < -22) continue;
    const est = j >= 0 ? v * unchecked(POW10[j]) : v / unchecked(POW10[-j]);
    const n0 = Math.round(est);
    for (let dn = -1; dn <= 1; dn++) {
      const n = n0 + <f64>dn;
      if (n < 1 || n >= 1e15) continue;
      const back = j >= 0 ? n / unchecked(POW10[j]) : n * unchecked(POW10[-j]);
      if (back != v) continue;
      let u = <u64>n;
      let nd = 0;
      const tmp = fastTmp;
      while (u) {
        unchecked((tmp[nd++] = <u8>(0x30 + u % 10)));
        u /= 10;
      }
      digitPoint = nd - j;
      let lead = 0;
      while (unchecked(tmp[lead]) == 0x30) lead++;
      let out = 0;
      for (let i = nd - 1; i >= lead; i--) unchecked((digitBuf[out++] = tmp[i]));
      return out;
    }
  }
  return 0;
}

const bR = new Big(40);
const bS = new Big(40);
const bMp = new Big(40);
const bMm = new Big(40);
const bT = new Big(40);

// Exact path: Burger & Dybvig's free-format algorithm ("Printing
// floating-point numbers quickly and accurately", 1996).
function shortestExact(v: f64): i32 {
  const bits = reinterpret<u64>(v);
  const be = <i32>((bits >> 52) & 0x7FF);
  let f = bits & ((<u64>1 << 52) - 1);
  let e: i32;
  if (be) {
    f |= <u64>1 << 52;
    e = be - 1075;
  } else e = -1074;
  const even = (f & 1) == 0;
  const boundary = f == <u64>1 << 52 && be > 1; // the gap below v is half the gap above
  const r = bR, s = bS, mp = bMp, mm = bMm, t = bT;
  if (e >= 0) {
    r.setU64(f).shl(e + (boundary ? 2 : 1));
    s.setU64(boundary ? 4 : 2);
    mp.setU64(1).shl(e + (boundary ? 1 : 0));
    mm.setU64(1).shl(e);
  } else {
    r.setU64(f).shl(boundary ? 2 : 1);
    s.setU64(1).shl(-e + (boundary ? 2 : 1));
    mp.setU64(boundary ? 2 : 1);
    mm.setU64(1);
  }
  let k = <i32>Math.ceil(Math.log10(v) - 1e-10);
  if (k >= 0) s.mulPow10(k);
  else {
    r.mulPow10(-k);
    mp.mulPow10(-k);
    mm.mulPow10(-k);
  }
  r.addTo(mp, t);
  const c = t.cmp(s);
  if (even ? c >= 0 : c > 0) k++;
  else {
    r.mulSmall(10);
    mp.mulSmall(10);
    mm.mulSmall(10);
  }
  digitPoint = k;
  let nd = 0;
  for (;;) {
    let d = 0;
    while (r.cmp(s) >= 0) {
      r.sub(s);
      d++;
    }
    const lo = r.cmp(mm);
    const tc1 = even ? lo <= 0 : lo < 0;
    r.addTo(mp, t);
    const hi = t.cmp(s);
    const tc2 = even ? hi >= 0 : hi > 0;
    if (!tc1 && !tc2) {
      unchecked((digitBuf[nd++] = <u8>(0x30 + d)));
      r.mulSmall(10);
      mp.mulSmall(10);
      mm.mulSmall(10);
      continue;
    }
    if (tc1 && tc2) {
      r.addTo(r, t); // the nearer one; a tie goes to the even digit
      const half = t.cmp(s);
      if (half > 0 || (half == 0 && d % 2 == 1)) d++;
    } else if (tc2) d++;
    unchecked((digitBuf[nd++] = <u8>(0x30 + d)));
    return nd;
  }
}

/**
 * Writes v as JSON at out (room for 32 bytes): the shortest text that reads
 * back as v (the nearer of two candidates, a tie going to the even digit),
 * laid out like JavaScript's Number.prototype.toString (exponent form from
 * 1e21 up and below 1e-6; "-0" for negative zero). Returns the length, or 0
 * for NaN and infinities. The same algorithm as the C and Rust SDKs.
 */
export function formatNumber(v: f64, out: usize): usize {
  if (!isFinite(v)) return 0;
  let o = out;
  if (reinterpret<i64>(v) < 0) {
    store<u8>(o++, 0x2D);
    v = -v;
  }
  if (v == 0) {
    store<u8>(o++, 0x30);
    return o - out;
  }
  let nd = shortestFast(v);
  if (!nd) nd = shortestExact(v);
  const point = digitPoint;
  const dp = changetype<usize>(digitBuf);
  if (nd <= point && point <= 21) {
    memory.copy(o, dp, nd);
    o += nd;
    for (let i = nd; i < point; i++) store<u8>(o++, 0x30);
  } else if (0 < point && point <= 21) {
    memory.copy(o, dp, point);
    o += point;
    store<u8>(o++, 0x2E);
    memory.copy(o, dp + point, nd - point);
    o += nd - point;
  } else if (-6 < point && point <= 0) {
    store<u8>(o++, 0x30);
    store<u8>(o++, 0x2E);
    for (let i = point; i < 0; i++) store<u8>(o++, 0x30);
    memory.copy(o, dp, nd);
    o += nd;
  } else {
    store<u8>(o++, load<u8>(dp));
    if (nd > 1) {
      store<u8>(o++, 0x2E);
      memory.copy(o, dp + 1, nd - 1);
      o += nd - 1;
    }
    let x = point - 1;
    store<u8>(o++, 0x65);
    store<u8>(o++, x < 0 ? 0x2D : 0x2B);
    if (x < 0) x = -x;
    if (x >= 100) store<u8>(o++, 0x30 + x / 100);
    if (x >= 10) store<u8>(o++, 0x30 + (x / 10) % 10);
    store<u8>(o++, 0x30 + x % 10);
  }
  return o - out;
}

/** formatNumber as a string ("" for NaN and infinities). */
export function numberToJSON(v: f64): string {
  const p = scratch(32);
  return String.UTF8.decodeUnsafe(p, formatNumber(v, p));
}

// Significant digits kept for the exact parse; beyond them a nonzero tail is
// one sticky digit, which keeps every rounding decision exact.
const MAX_DIGITS = 800;
const pDigits = new StaticArray<u8>(MAX_DIGITS + 1);

/**
 * Parses the JSON number text [p, p+len): correctly rounded to the nearest
 * f64 (ties to even). NaN when the text is not a JSON number or the number is
 * too large for f64 (as in the Go SDK).
 */
export function parseNumber(p: usize, len: usize): f64 {
  const e = p + len;
  let neg = false;
  if (p < e && load<u8>(p) == 0x2D) {
    neg = true;
    p++;
  }
  if (p >= e) return NaN;
  let c = load<u8>(p);
  // Integer part.
  let nd = 0; // significant digits kept
  let dropped = false; // a nonzero digit beyond MAX_DIGITS
  let exp10: i32 = 0; // value = digits × 10^exp10
  if (c == 0x30) {
    p++;
  } else if (c >= 0x31 && c <= 0x39) {
    while (p < e) {
      c = load<u8>(p);
      if (c < 0x30 || c > 0x39) break;
      if (nd < MAX_DIGITS) {
        unchecked((pDigits[nd++] = c - 0x30));
      } else {
        exp10++;
        if (c != 0x30) dropped = true;
      }
      p++;
    }
  } else return NaN;
  // Fraction.
  if (p < e && load<u8>(p) == 0x2E) {
    p++;
    const start = p;
    while (p < e) {
      c = load<u8>(p);
      if (c < 0x30 || c > 0x39) break;
      if (nd == 0 && c == 0x30) {
        exp10--; // leading zeros are not significant
      } else if (nd < MAX_DIGITS) {
        unchecked((pDigits[nd++] = c - 0x30));
        exp10--;
      } else if (c != 0x30) dropped = true;
      p++;
    }
    if (p == start) return NaN;
  }
  // Exponent.
  if (p < e && (load<u8>(p) | 0x20) == 0x65) {
    p++;
    let eneg = false;
    if (p < e && (load<u8>(p) == 0x2B || load<u8>(p) == 0x2D)) {
      eneg = load<u8>(p) == 0x2D;
      p++;
    }
    const start = p;
    let x: i32 = 0;
    while (p < e) {
      c = load<u8>(p);
      if (c < 0x30 || c > 0x39) break;
      if (x < 100000) x = x * 10 + (c - 0x30);
      p++;
    }
    if (p == start) return NaN;
    exp10 += eneg ? -x : x;
  }
  if (p != e) return NaN;
  // Trailing zeros of the kept digits are not significant either.
  while (nd > 0 && !dropped && unchecked(pDigits[nd - 1]) == 0) {
    nd--;
    exp10++;
  }
  // The first 19 significant digits.
  let w: u64 = 0;
  const wd = min(nd, 19);
  for (let i = 0; i < wd; i++) w = w * 10 + unchecked(pDigits[i]);
  let v: f64;
  if (nd == 0) v = 0;
  else if (nd + exp10 > 310) return NaN; // >= 1e310
  else if (nd + exp10 < -330) v = 0; // < 1e-330
  else if (nd <= 15 && !dropped && exp10 >= -22 && exp10 <= 22) {
    // Exact: w < 2^53 and 10^|exp10| are exact, and one rounding follows.
    v = exp10 >= 0 ? <f64>w * unchecked(POW10[exp10]) : <f64>w / unchecked(POW10[-exp10]);
  } else {
    v = parseExact(nd, exp10, dropped, w, wd);
    if (!isFinite(v)) return NaN;
  }
  return neg ? -v : v;
}

const xL = new Big(160);
const xR = new Big(160);
const xP = new Big(160);
const xD = new Big(160);

// Compares digits × 10^exp10 (xD holds the digits) with M × 2^q exactly.
function cmpExact(exp10: i32, m: u64, q: i32): i32 {
  const L = xL.copyFrom(xD);
  const R = xR.setU64(m);
  if (exp10 >= 0) L.mulPow10(exp10);
  else {
    // R *= 10^-exp10, by the precomputed power in xP: R = P × m.
    const lo = <u32>m;
    const hi = <u32>(m >> 32);
    R.copyFrom(xP);
    R.mulSmall(lo);
    if (hi) {
      const t = bT2.copyFrom(xP);
      t.mulSmall(hi);
      t.shl(32);
      R.addTo(t, R);
    }
  }
  if (q >= 0) R.shl(q);
  else L.shl(-q);
  return L.cmp(R);
}

const bT2 = new Big(160);

// The correctly rounded value of digits × 10^exp10: an estimate from the first
// 19 digits, then moved one ulp at a time until the exact comparisons with the
// halfway points to its neighbours hold (Clinger's AlgorithmR, comparisons
// only). Infinity when it overflows.
function parseExact(nd: i32, exp10: i32, dropped: bool, w: u64, wd: i32): f64 {
  xD.n = 0;
  for (let i = 0; i < nd; i++) {
    xD.mulSmall(10);
    xD.addSmall(unchecked(pDigits[i]));
  }
  let e10 = exp10;
  if (dropped) {
    xD.mulSmall(10);
    xD.addSmall(1);
    e10--;
  }
  if (e10 < 0) {
    xP.setU64(1);
    xP.mulPow10(-e10);
  }
  // Estimate.
  const we = exp10 + (nd - wd);
  let z: f64;
  if (we > 300) z = <f64>w * Math.pow(10, we - 300) * 1e300;
  else if (we < -300) z = (<f64>w * Math.pow(10, we + 300)) * 1e-300;
  else z = <f64>w * Math.pow(10, we);
  if (!isFinite(z)) z = F64.MAX_VALUE;
  for (let iter = 0; iter < 4096; iter++) {
    const bits = reinterpret<u64>(z);
    const be = <i32>((bits >> 52) & 0x7FF);
    let m = bits & ((<u64>1 << 52) - 1);
    let q: i32;
    if (be) {
      m |= <u64>1 << 52;
      q = be - 1075;
    } else q = -1074;
    const odd = (m & 1) == 1;
    // Upper halfway point (2m+1) × 2^(q-1).
    const up = cmpExact(e10, 2 * m + 1, q - 1);
    if (up > 0 || (up == 0 && odd)) {
      if (z == F64.MAX_VALUE) return Infinity;
      z = reinterpret<f64>(bits + 1);
      continue;
    }
    if (z == 0) return 0;
    // Lower halfway point: (4m-1) × 2^(q-2) at a power of two, else (2m-1) × 2^(q-1).
    const lower = m == <u64>1 << 52 && be > 1 ? cmpExact(e10, 4 * m - 1, q - 2) : cmpExact(e10, 2 * m - 1, q - 1);
    if (lower < 0 || (lower == 0 && odd)) {
      z = reinterpret<f64>(bits - 1);
      continue;
    }
    return z;
  }
  return z;
}

// ---------------------------------------------------------------- output

/** Collects the outputs of one batch in the ABI's output encoding. */
export class Output {
  index: u32 = 0;
  count: u32 = 0;
  failed: string | null = null;

  /** Emits r as an output of the current input record. A record with a
   * failed edit (r.error) fails the input record instead. */
  emit(r: Record): void {
    if (r.error !== null) {
      if (this.failed === null) this.failed = r.error;
      return;
    }
    reserve(24 + r.valueLen + r.keyLen + r.destLen + r.headersLen);
    let o = outBuf + outLen;
    store<u32>(o, this.index);
    store<u32>(o + 4, 0);
    o = putBytes(o + 8, r.valuePtr, r.valueLen);
    o = putBytes(o, r.keyPtr, r.keyLen);
    o = putBytes(o, r.destPtr, r.destLen);
    store<u32>(o, r.headerCount);
    memory.copy(o + 4, r.headersPtr, r.headersLen);
    outLen = o + 4 + r.headersLen - outBuf;
    this.count++;
  }
}

function putBytes(o: usize, p: usize, n: usize): usize {
  store<u32>(o, <u32>n);
  memory.copy(o + 4, p, n);
  return o + 4 + n;
}

// One output buffer and one input buffer, grown as needed and reused.
let outBuf: usize = 0;
let outCap: usize = 0;
let outLen: usize = 0;
let inBuf: usize = 0;
let inCap: usize = 0;
let errBuf: usize = 0;

function reserve(more: usize): void {
  if (outLen + more <= outCap) return;
  let cap = outCap ? outCap : 65536;
  while (cap < outLen + more) cap *= 2;
  outBuf = outBuf ? heap.realloc(outBuf, cap) : heap.alloc(cap);
  outCap = cap;
}

function pack(p: usize, n: usize): i64 {
  return <i64>((<u64>p << 32) | <u64>n);
}

// ---------------------------------------------------------------- the ABI

export type InitFn = (config: Value) => string | null;
export type ProcessFn = (r: Record, out: Output) => string | null;

let userInit: InitFn | null = null;
let userProcess: ProcessFn | null = null;

/** Registers the transform. init may be null when there is no config. */
export function register(init: InitFn | null, process: ProcessFn): void {
  userInit = init;
  userProcess = process;
}

/** @internal */
export function abiAlloc(size: i32): usize {
  const n = <usize>max(size, 1);
  if (n > inCap) {
    if (inBuf) heap.free(inBuf);
    inBuf = heap.alloc(n);
    inCap = n;
  }
  return inBuf;
}

function errorResult(msg: string): i64 {
  const buf = String.UTF8.encode(msg);
  if (errBuf) heap.free(errBuf);
  errBuf = heap.alloc(<usize>max(buf.byteLength, 1));
  memory.copy(errBuf, changetype<usize>(buf), buf.byteLength);
  return pack(errBuf, buf.byteLength);
}

/** @internal */
export function abiInit(ptr: usize, len: i32): i64 {
  if (userProcess === null) return errorResult("no transform registered: call register(init, process) in the module");
  scratchReset();
  const init = userInit;
  if (init === null) return 0;
  const err = init(new Value(ptr, <usize>len));
  const result = err !== null ? errorResult(err.length ? err : "init failed") : 0;
  collectGarbage();
  return result;
}

const output = new Output();
const input = new Record(); // reused for every input record

/** @internal */
export function abiProcess(ptr: usize, len: i32): i64 {
  const e = ptr + <usize>len;
  let p = ptr;
  const process = userProcess!;
  const out = output;
  out.count = 0;
  outLen = 0;
  reserve(4);
  outLen = 4;
  const n = readU32(p, e);
  p += 4;
  for (let i: u32 = 0; i < n; i++) {
    scratchReset();
    const r = input;
    r.reset();
    r.valueLen = <usize>readU32(p, e);
    r.valuePtr = p + 4;
    p = skipBytes(p, e);
    r.keyLen = <usize>readU32(p, e);
    r.keyPtr = p + 4;
    p = skipBytes(p, e);
    r.destLen = <usize>readU32(p, e);
    r.destPtr = p + 4;
    p = skipBytes(p, e);
    r.headerCount = readU32(p, e);
    p += 4;
    r.headersPtr = p;
    for (let h: u32 = 0; h < r.headerCount; h++) {
      p = skipBytes(p, e);
      p = skipBytes(p, e);
    }
    r.headersLen = p - r.headersPtr;
    out.index = i;
    out.failed = null;
    const mark = outLen;
    const markCount = out.count;
    let err = process(r, out);
    if (err === null) err = out.failed;
    if (err !== null) {
      outLen = mark;
      out.count = markCount;
      const msg = String.UTF8.encode(err.length ? err : "error");
      reserve(12 + msg.byteLength);
      const o = outBuf + outLen;
      store<u32>(o, i);
      store<u32>(o + 4, 1);
      putBytes(o + 8, changetype<usize>(msg), msg.byteLength);
      outLen += 12 + msg.byteLength;
      out.count++;
    }
  }
  store<u32>(outBuf, out.count);
  collectGarbage();
  return pack(outBuf, outLen);
}

// With the minimal runtime (asc --runtime minimal, as plugins/build-guests.sh
// builds) the garbage collector runs only when called: the SDK calls it after
// every sluice_init and sluice_process, when nothing on the stack holds a
// managed object. The default incremental runtime collects by itself, at the
// price of a shadow stack on every call that holds one (about half the cost
// of a transform such as enrich).
function collectGarbage(): void {
  if (ASC_RUNTIME == 1) __collect(); // Runtime.Minimal
}

// Any read past the end of the batch traps.
function readU32(p: usize, e: usize): u32 {
  if (p > e || e - p < 4) unreachable();
  return load<u32>(p);
}

function skipBytes(p: usize, e: usize): usize {
  const n = <usize>readU32(p, e);
  if (e - p - 4 < n) unreachable();
  return p + 4 + n;
}
