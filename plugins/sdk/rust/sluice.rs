//! The Sluice transform SDK for Rust (ABI v1, `docs/abi.md`).
//!
//! A plain module with no dependencies beyond `std`: include it in the
//! transform's crate as `sluice` at the crate root, implement [`Transform`]
//! and export it:
//!
//! ```ignore
//! #[path = "../../../sdk/rust/sluice.rs"]
//! mod sluice;
//! use sluice::{Output, Record, Value};
//!
//! struct Tag { site: String }
//!
//! impl sluice::Transform for Tag {
//!     fn new(config: &Value) -> Result<Self, String> {
//!         let site = config.get("site").and_then(|v| v.as_str()).ok_or("config: site is required")?;
//!         Ok(Tag { site: site.into_owned() })
//!     }
//!     fn process(&mut self, r: &mut Record, out: &mut Output) -> Result<(), String> {
//!         r.set_str("site", &self.site)?;
//!         out.emit(r);
//!         Ok(())
//!     }
//! }
//!
//! sluice::export!(Tag);
//! ```
//!
//! Build (README.md): `/usr/bin/rustc --edition 2021 --target wasm32-wasi
//! --crate-type cdylib -O -C target-feature=+bulk-memory tag.rs`.
//!
//! `process` runs once per input record. It calls [`Output::emit`] once per
//! output: not at all to filter the record, several times to split it. An
//! `Err` fails the record with that message (what it emitted is discarded).
//!
//! The field helpers work on the JSON bytes directly: the first to run
//! indexes the record's top-level fields in one pass, and a setter splices
//! the new value in (in place when the field exists, at the end of the
//! object when not) and moves the index along. Nothing is parsed into a tree.
#![allow(dead_code)]

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt::Write as _;

// The buffers kept across calls: one input buffer, grown as needed; one
// output buffer and one error buffer, reused on every call. The module runs
// one call at a time (docs/abi.md), and no function takes a buffer that a
// caller holds.
macro_rules! global {
    ($name:ident) => {
        unsafe { &mut *std::ptr::addr_of_mut!($name) }
    };
}

static mut INPUT: Vec<u8> = Vec::new();
static mut OUTPUT: Vec<u8> = Vec::new();
// Buffers of the last input record, for the next one.
static mut SPARE_VALUE: Vec<u8> = Vec::new();
static mut SPARE_FIELDS: Vec<Field> = Vec::new();
// Staging for an appended field's key, and for a quoted string value.
static mut KEY_BUF: Vec<u8> = Vec::new();
static mut QUOTE_BUF: Vec<u8> = Vec::new();
static mut ERROR: Vec<u8> = Vec::new();

// ------------------------------------------------------------------ values

/// The kind of a JSON value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

/// One raw JSON value, borrowed from a record or the config.
#[derive(Clone, Copy, Debug)]
pub struct Value<'a> {
    raw: &'a [u8],
}

impl<'a> Value<'a> {
    /// Wraps raw JSON text (trusted to be one valid JSON value).
    pub fn new(raw: &'a [u8]) -> Self {
        Value { raw: trim(raw) }
    }

    /// The value's JSON text.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    pub fn kind(&self) -> Kind {
        match self.raw.first() {
            Some(b'{') => Kind::Object,
            Some(b'[') => Kind::Array,
            Some(b'"') => Kind::String,
            Some(b't') | Some(b'f') => Kind::Bool,
            Some(b'n') => Kind::Null,
            _ => Kind::Number,
        }
    }

    /// The number, when the value is a JSON number (correctly rounded).
    /// A number too large for f64 is not a number here, as in the Go SDK.
    pub fn as_f64(&self) -> Option<f64> {
        parse_number(self.raw)
    }

    /// The decoded string, when the value is a JSON string (and valid
    /// UTF-8). Borrowed when it has no escapes.
    pub fn as_str(&self) -> Option<Cow<'a, str>> {
        match self.as_str_bytes()? {
            Cow::Borrowed(b) => std::str::from_utf8(b).ok().map(Cow::Borrowed),
            Cow::Owned(b) => String::from_utf8(b).ok().map(Cow::Owned),
        }
    }

    /// The decoded bytes of a JSON string, whatever they hold.
    pub fn as_str_bytes(&self) -> Option<Cow<'a, [u8]>> {
        if self.kind() != Kind::String || self.raw.len() < 2 {
            return None;
        }
        let body = &self.raw[1..self.raw.len() - 1];
        if !body.contains(&b'\\') {
            return Some(Cow::Borrowed(body));
        }
        Some(Cow::Owned(unescape(body)))
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.raw {
            b"true" => Some(true),
            b"false" => Some(false),
            _ => None,
        }
    }

    /// A member of this object, by name (the first one wins).
    pub fn get(&self, name: &str) -> Option<Value<'a>> {
        let (a, z) = find_member(self.raw, name.as_bytes())?;
        Some(Value { raw: &self.raw[a..z] })
    }

    /// The members of this object in document order, names decoded (none
    /// when it is not an object).
    pub fn members(&self) -> Members<'a> {
        let raw = self.raw;
        let pos = if raw.first() == Some(&b'{') { 1 } else { raw.len() };
        Members { raw, pos }
    }

    /// The elements of this array (none when it is not an array).
    pub fn elements(&self) -> Elements<'a> {
        let raw = self.raw;
        let pos = if raw.first() == Some(&b'[') { 1 } else { raw.len() };
        Elements { raw, pos }
    }
}

/// An iterator over the elements of a JSON array.
pub struct Elements<'a> {
    raw: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Elements<'a> {
    type Item = Value<'a>;
    fn next(&mut self) -> Option<Value<'a>> {
        let mut p = skip_ws(self.raw, self.pos);
        if self.raw.get(p) == Some(&b',') {
            p = skip_ws(self.raw, p + 1);
        }
        if p >= self.raw.len() || self.raw[p] == b']' {
            self.pos = self.raw.len();
            return None;
        }
        let end = skip_value(self.raw, p)?;
        self.pos = end;
        Some(Value { raw: &self.raw[p..end] })
    }
}

/// An iterator over the members of a JSON object: (decoded name, value).
pub struct Members<'a> {
    raw: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Members<'a> {
    type Item = (Cow<'a, str>, Value<'a>);
    fn next(&mut self) -> Option<Self::Item> {
        let b = self.raw;
        let mut p = skip_ws(b, self.pos);
        if b.get(p) == Some(&b',') {
            p = skip_ws(b, p + 1);
        }
        self.pos = b.len();
        if b.get(p) != Some(&b'"') {
            return None;
        }
        let key_end = skip_string(b, p)?;
        let colon = skip_ws(b, key_end);
        if b.get(colon) != Some(&b':') {
            return None;
        }
        let val = skip_ws(b, colon + 1);
        let val_end = skip_value(b, val)?;
        self.pos = val_end;
        let name = Value { raw: &b[p..key_end] }.as_str()?;
        Some((name, Value { raw: &b[val..val_end] }))
    }
}

// ------------------------------------------------------------------ records

/// A record: its JSON document, Kafka key, destination and headers.
/// Clone it to make the parts of a split; unchanged bytes stay borrowed.
///
/// The field helpers share one index of the top-level fields, built by the
/// first of them to run and kept up to date by the edits, so that a record's
/// bytes are scanned once however many fields are read and written.
#[derive(Clone, Debug)]
pub struct Record<'a> {
    value: Cow<'a, [u8]>,
    /// The Kafka message key; empty means "not set".
    pub key: Cow<'a, [u8]>,
    /// The destination (Kafka topic or ClickHouse table); empty means the sink's.
    pub dest: Cow<'a, [u8]>,
    /// The headers, as (name, value) pairs.
    pub headers: Vec<(Cow<'a, [u8]>, Cow<'a, [u8]>)>,
    index: RefCell<Index>,
}

/// Where the top-level fields of a value are.
#[derive(Clone, Debug, Default)]
struct Index {
    valid: bool,
    object: bool,
    open: usize, // where '{' is
    fields: Vec<Field>,
}

#[derive(Clone, Copy, Debug)]
struct Field {
    key: (usize, usize), // the key's body, between the quotes
    val: (usize, usize),
    esc: bool, // the key has escapes
}

impl Index {
    /// Indexes b; returns whether it is a JSON object.
    fn build(&mut self, b: &[u8]) -> bool {
        self.valid = true;
        self.object = false;
        self.fields.clear();
        let mut p = skip_ws(b, 0);
        if b.get(p) != Some(&b'{') {
            return false;
        }
        self.open = p;
        p = skip_ws(b, p + 1);
        if b.get(p) == Some(&b'}') {
            self.object = true;
            return true;
        }
        while b.get(p) == Some(&b'"') {
            let mut esc = false;
            let key_end = match skip_string_esc(b, p, &mut esc) {
                Some(e) => e,
                None => return false,
            };
            let key = (p + 1, key_end - 1);
            p = skip_ws(b, key_end);
            if b.get(p) != Some(&b':') {
                return false;
            }
            p = skip_ws(b, p + 1);
            let val_end = match skip_value(b, p) {
                Some(e) => e,
                None => return false,
            };
            self.fields.push(Field { key, val: (p, val_end), esc });
            p = skip_ws(b, val_end);
            match b.get(p) {
                Some(b',') => p = skip_ws(b, p + 1),
                Some(b'}') => {
                    self.object = true;
                    return true;
                }
                _ => return false,
            }
        }
        false
    }

    /// Makes the index describe b (once per value); whether it is an object.
    fn of(&mut self, b: &[u8]) -> bool {
        if !self.valid {
            self.build(b);
        }
        self.object
    }

    /// The first field called name.
    fn find(&self, b: &[u8], name: &[u8]) -> Option<usize> {
        self.fields.iter().position(|f| {
            let k = &b[f.key.0..f.key.1];
            if f.esc {
                key_equals(k, name)
            } else {
                k == name
            }
        })
    }

    /// Moves the fields from j on by delta bytes.
    fn shift(&mut self, j: usize, delta: isize) {
        for f in &mut self.fields[j..] {
            f.key = ((f.key.0 as isize + delta) as usize, (f.key.1 as isize + delta) as usize);
            f.val = ((f.val.0 as isize + delta) as usize, (f.val.1 as isize + delta) as usize);
        }
    }
}

/// The value, made owned (in a buffer reused from record to record).
fn owned<'b>(value: &'b mut Cow<'_, [u8]>) -> &'b mut Vec<u8> {
    if let Cow::Borrowed(b) = *value {
        let mut v = std::mem::take(global!(SPARE_VALUE));
        v.clear();
        v.extend_from_slice(b);
        *value = Cow::Owned(v);
    }
    value.to_mut()
}

/// Replaces v[a..z] with the concatenation of parts, in place.
fn replace(v: &mut Vec<u8>, a: usize, z: usize, parts: &[&[u8]]) {
    let ins: usize = parts.iter().map(|p| p.len()).sum();
    let (old, len) = (z - a, v.len());
    if ins > old {
        v.resize(len + ins - old, 0);
        v.copy_within(z..len, a + ins);
    } else if ins < old {
        v.copy_within(z..len, a + ins);
        v.truncate(len - (old - ins));
    }
    let mut at = a;
    for p in parts {
        v[at..at + p.len()].copy_from_slice(p);
        at += p.len();
    }
}

// The SDKs share their messages with the Go SDK, so that a record fails with
// the same reason whatever language its transform is written in.
const NOT_OBJECT: &str = "sluice: value is not a JSON object";

impl<'a> Record<'a> {
    /// A record with this JSON document and no key, dest or headers.
    pub fn new(value: impl Into<Cow<'a, [u8]>>) -> Self {
        Record {
            value: value.into(),
            key: Cow::Borrowed(b""),
            dest: Cow::Borrowed(b""),
            headers: Vec::new(),
            index: RefCell::default(),
        }
    }

    /// The JSON document.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// Replaces the whole JSON document.
    pub fn set_value(&mut self, v: Vec<u8>) {
        self.value = Cow::Owned(v);
        self.index.get_mut().valid = false;
    }

    pub fn set_key(&mut self, key: &[u8]) {
        self.key = Cow::Owned(key.to_vec());
    }

    pub fn set_dest(&mut self, dest: &str) {
        self.dest = Cow::Owned(dest.as_bytes().to_vec());
    }

    /// The value of the first header called `name` (names match byte for
    /// byte; a name may repeat: `headers` holds them all, in order).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(k, _)| k.as_ref() == name.as_bytes()).map(|(_, v)| v.as_ref())
    }

    /// Sets the first header called `name` to `value`, adding it at the end
    /// when there is none.
    pub fn set_header(&mut self, name: &str, value: &[u8]) {
        let value = Cow::Owned(value.to_vec());
        match self.headers.iter_mut().find(|(k, _)| k.as_ref() == name.as_bytes()) {
            Some(h) => h.1 = value,
            None => self.headers.push((Cow::Owned(name.as_bytes().to_vec()), value)),
        }
    }

    /// Removes every header called `name`; returns whether there was one.
    pub fn delete_header(&mut self, name: &str) -> bool {
        let n = self.headers.len();
        self.headers.retain(|(k, _)| k.as_ref() != name.as_bytes());
        self.headers.len() < n
    }

    /// A top-level field (the first one with that name).
    pub fn get(&self, name: &str) -> Option<Value<'_>> {
        let mut ix = self.index.borrow_mut();
        if !ix.of(&self.value) {
            return None;
        }
        let f = ix.fields[ix.find(&self.value, name.as_bytes())?];
        Some(Value { raw: &self.value[f.val.0..f.val.1] })
    }

    pub fn get_raw(&self, name: &str) -> Option<&[u8]> {
        self.get(name).map(|v| v.raw)
    }

    pub fn get_f64(&self, name: &str) -> Option<f64> {
        self.get(name)?.as_f64()
    }

    pub fn get_str(&self, name: &str) -> Option<Cow<'_, str>> {
        self.get(name)?.as_str()
    }

    pub fn get_bool(&self, name: &str) -> Option<bool> {
        self.get(name)?.as_bool()
    }

    /// Sets a field to raw JSON text (trusted to be valid JSON): in place
    /// when the field exists, else appended at the end of the object.
    pub fn set_raw(&mut self, name: &str, json: &[u8]) -> Result<(), String> {
        let ix = self.index.get_mut();
        if !ix.of(&self.value) {
            return Err(NOT_OBJECT.to_string());
        }
        match ix.find(&self.value, name.as_bytes()) {
            Some(j) => {
                let (a, z) = ix.fields[j].val;
                replace(owned(&mut self.value), a, z, &[json]);
                ix.fields[j].val.1 = a + json.len();
                ix.shift(j + 1, json.len() as isize - (z - a) as isize);
            }
            None => {
                // ,"name":json after the last value (or "name":json after '{')
                let at = ix.fields.last().map_or(ix.open + 1, |f| f.val.1);
                let key = global!(KEY_BUF);
                key.clear();
                if !ix.fields.is_empty() {
                    key.push(b',');
                }
                let k0 = at + key.len() + 1;
                quote(key, name);
                let k1 = at + key.len() - 1;
                key.push(b':');
                let v0 = at + key.len();
                let esc = key[k0 - at..k1 - at].contains(&b'\\');
                replace(owned(&mut self.value), at, at, &[key, json]);
                ix.fields.push(Field { key: (k0, k1), val: (v0, v0 + json.len()), esc });
            }
        }
        Ok(())
    }

    pub fn set_str(&mut self, name: &str, s: &str) -> Result<(), String> {
        let q = global!(QUOTE_BUF);
        q.clear();
        quote(q, s);
        self.set_raw(name, q)
    }

    /// Sets a number, written as [`format_f64`] does; fails when v is NaN
    /// or infinite (JSON has no such numbers).
    pub fn set_f64(&mut self, name: &str, v: f64) -> Result<(), String> {
        let mut buf = NumBuf::new();
        if !format_f64(v, &mut buf) {
            let v = if v.is_nan() { "NaN" } else if v > 0.0 { "+Inf" } else { "-Inf" };
            return Err(format!("sluice: set \"{}\": {} has no JSON form", name, v));
        }
        self.set_raw(name, buf.as_bytes())
    }

    pub fn set_i64(&mut self, name: &str, v: i64) -> Result<(), String> {
        self.set_raw(name, v.to_string().as_bytes())
    }

    pub fn set_bool(&mut self, name: &str, v: bool) -> Result<(), String> {
        self.set_raw(name, if v { b"true" } else { b"false" })
    }

    /// Removes a field; returns whether it was there.
    pub fn delete(&mut self, name: &str) -> Result<bool, String> {
        let ix = self.index.get_mut();
        if !ix.of(&self.value) {
            return Err(NOT_OBJECT.to_string());
        }
        let j = match ix.find(&self.value, name.as_bytes()) {
            Some(j) => j,
            None => return Ok(false),
        };
        let f = &ix.fields;
        let (a, z) = if j > 0 {
            (f[j - 1].val.1, f[j].val.1) // from the previous value's end: `, "name": value`
        } else if f.len() > 1 {
            (f[0].key.0 - 1, f[1].key.0 - 1) // the first of several: `"name": value, ` up to the next key
        } else {
            (f[0].key.0 - 1, f[0].val.1) // the only field
        };
        replace(owned(&mut self.value), a, z, &[]);
        ix.fields.remove(j);
        ix.shift(j, -((z - a) as isize));
        Ok(true)
    }
}

// ------------------------------------------------------------------ output

/// Collects the outputs of one batch, in the ABI's output encoding.
pub struct Output {
    buf: Vec<u8>,
    count: u32,
    index: u32,
}

impl Output {
    /// Emits r as an output of the current input record.
    pub fn emit(&mut self, r: &Record) {
        let b = &mut self.buf;
        put_u32(b, self.index);
        put_u32(b, 0);
        put_bytes(b, &r.value);
        put_bytes(b, &r.key);
        put_bytes(b, &r.dest);
        put_u32(b, r.headers.len() as u32);
        for (k, v) in &r.headers {
            put_bytes(b, k);
            put_bytes(b, v);
        }
        self.count += 1;
    }
}

fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(b: &mut Vec<u8>, v: &[u8]) {
    put_u32(b, v.len() as u32);
    b.extend_from_slice(v);
}

// ------------------------------------------------------------------ the ABI

/// A transform. `new` runs once per instance with the `config:` block of
/// pipeline.yaml (a JSON object, `{}` when absent); `process` once per record.
pub trait Transform: Sized {
    fn new(config: &Value) -> Result<Self, String>;
    fn process(&mut self, r: &mut Record, out: &mut Output) -> Result<(), String>;
}

/// Exports a [`Transform`] implementation as the module's ABI functions.
/// The SDK module must be mounted as `sluice` at the crate root.
#[allow(unused_macros)]
macro_rules! export {
    ($t:ty) => {
        static mut __SLUICE_TRANSFORM: Option<$t> = None;

        #[no_mangle]
        pub extern "C" fn sluice_init(ptr: *const u8, len: i32) -> i64 {
            let input = $crate::sluice::__input(ptr, len);
            match <$t as $crate::sluice::Transform>::new(&$crate::sluice::Value::new(input)) {
                Ok(t) => {
                    unsafe { __SLUICE_TRANSFORM = Some(t) };
                    0
                }
                Err(e) => $crate::sluice::__error(e),
            }
        }

        #[no_mangle]
        pub extern "C" fn sluice_process(ptr: *const u8, len: i32) -> i64 {
            let t = match unsafe { (*std::ptr::addr_of_mut!(__SLUICE_TRANSFORM)).as_mut() } {
                Some(t) => t,
                None => panic!("sluice_process called before a successful sluice_init"),
            };
            let input = $crate::sluice::__input(ptr, len);
            $crate::sluice::__process(input, |r, out| $crate::sluice::Transform::process(t, r, out))
        }
    };
}
#[allow(unused_imports)]
pub(crate) use export;

#[cfg(target_arch = "wasm32")]
extern "C" {
    fn __wasm_call_ctors();
}

/// Makes the module a WASI reactor: wasm-ld then leaves the exports alone
/// (a cdylib without it gets "command" exports that re-run constructors and
/// destructors around every call).
#[cfg(target_arch = "wasm32")]
#[no_mangle]
pub extern "C" fn _initialize() {
    unsafe { __wasm_call_ctors() }
}

#[no_mangle]
pub extern "C" fn sluice_abi_version() -> i32 {
    1
}

#[no_mangle]
pub extern "C" fn sluice_alloc(size: i32) -> *mut u8 {
    let size = (size.max(1)) as usize;
    let input = global!(INPUT);
    if input.capacity() < size {
        *input = Vec::with_capacity(size);
    }
    input.as_mut_ptr()
}

#[doc(hidden)]
pub fn __input(ptr: *const u8, len: i32) -> &'static [u8] {
    // The host wrote len bytes at ptr, which sluice_alloc handed out.
    unsafe { std::slice::from_raw_parts(ptr, len.max(0) as usize) }
}

fn pack(p: *const u8, len: usize) -> i64 {
    ((p as usize as u64) << 32 | len as u64) as i64
}

#[doc(hidden)]
pub fn __error(msg: String) -> i64 {
    let error = global!(ERROR);
    *error = msg.into_bytes();
    if error.is_empty() {
        error.extend_from_slice(b"init failed");
    }
    pack(error.as_ptr(), error.len())
}

#[doc(hidden)]
pub fn __process(input: &[u8], mut f: impl FnMut(&mut Record, &mut Output) -> Result<(), String>) -> i64 {
    let mut out = Output { buf: std::mem::take(global!(OUTPUT)), count: 0, index: 0 };
    out.buf.clear();
    put_u32(&mut out.buf, 0);
    let mut rd = Reader { b: input, p: 0 };
    let n = rd.u32();
    for i in 0..n {
        let value = rd.bytes();
        let key = rd.bytes();
        let dest = rd.bytes();
        let hc = rd.u32();
        let mut headers = Vec::new();
        for _ in 0..hc {
            headers.push((Cow::Borrowed(rd.bytes()), Cow::Borrowed(rd.bytes())));
        }
        let mut r = Record {
            value: Cow::Borrowed(value),
            key: Cow::Borrowed(key),
            dest: Cow::Borrowed(dest),
            headers,
            index: RefCell::new(Index { fields: std::mem::take(global!(SPARE_FIELDS)), ..Index::default() }),
        };
        out.index = i;
        let (mark, mark_count) = (out.buf.len(), out.count);
        if let Err(e) = f(&mut r, &mut out) {
            out.buf.truncate(mark);
            out.count = mark_count;
            put_u32(&mut out.buf, i);
            put_u32(&mut out.buf, 1);
            put_bytes(&mut out.buf, if e.is_empty() { b"error" } else { e.as_bytes() });
            out.count += 1;
        }
        *global!(SPARE_FIELDS) = r.index.into_inner().fields;
        if let Cow::Owned(v) = r.value {
            *global!(SPARE_VALUE) = v;
        }
    }
    out.buf[..4].copy_from_slice(&out.count.to_le_bytes());
    let r = pack(out.buf.as_ptr(), out.buf.len());
    *global!(OUTPUT) = out.buf;
    r
}

struct Reader<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Reader<'a> {
    fn u32(&mut self) -> u32 {
        let v = u32::from_le_bytes(self.b[self.p..self.p + 4].try_into().unwrap());
        self.p += 4;
        v
    }
    fn bytes(&mut self) -> &'a [u8] {
        let n = self.u32() as usize;
        let v = &self.b[self.p..self.p + n];
        self.p += n;
        v
    }
}

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "sluice")]
extern "C" {
    #[link_name = "log"]
    fn host_log(level: i32, ptr: *const u8, len: i32);
}

/// Writes a message to Sluice's log (0 debug, 1 info, 2 warn, 3 error).
/// Outside WebAssembly (unit tests) it writes to stderr.
pub fn log(level: i32, msg: &str) {
    #[cfg(target_arch = "wasm32")]
    unsafe {
        host_log(level, msg.as_ptr(), msg.len() as i32)
    }
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("sluice log[{}]: {}", level, msg);
}

// ------------------------------------------------------------------ JSON scanning

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

fn skip_ws(b: &[u8], mut p: usize) -> usize {
    if p < b.len() && b[p] > b' ' {
        return p; // compact JSON: no whitespace
    }
    while p < b.len() && is_ws(b[p]) {
        p += 1;
    }
    p
}

fn trim(b: &[u8]) -> &[u8] {
    let s = skip_ws(b, 0);
    let mut e = b.len();
    while e > s && is_ws(b[e - 1]) {
        e -= 1;
    }
    &b[s..e]
}

/// A mask with the high bit of every byte of w that is '"' or '\\' (the
/// classic has-zero-byte test); its lowest set bit is exact, so
/// trailing_zeros finds the first such byte.
fn quote_or_backslash(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let q = w ^ (ONES * b'"' as u64);
    let b = w ^ (ONES * b'\\' as u64);
    (q.wrapping_sub(ONES) & !q | b.wrapping_sub(ONES) & !b) & HIGHS
}

/// b[p] is '"'; returns the position after the closing quote.
fn skip_string(b: &[u8], p: usize) -> Option<usize> {
    skip_string_esc(b, p, &mut false)
}

/// skip_string, setting esc when the string has escapes. Plain runs are
/// skipped eight bytes at a time.
fn skip_string_esc(b: &[u8], mut p: usize, esc: &mut bool) -> Option<usize> {
    p += 1;
    while p + 8 <= b.len() {
        let m = quote_or_backslash(u64::from_le_bytes(b[p..p + 8].try_into().unwrap()));
        if m == 0 {
            p += 8;
            continue;
        }
        p += (m.trailing_zeros() >> 3) as usize;
        if b[p] == b'"' {
            return Some(p + 1);
        }
        *esc = true;
        p += 2;
    }
    while p < b.len() {
        match b[p] {
            b'"' => return Some(p + 1),
            b'\\' => {
                *esc = true;
                p += 2
            }
            _ => p += 1,
        }
    }
    None
}

/// Returns the end of the JSON value starting at p. The text is trusted to
/// be valid JSON (the host checks every value it reads).
fn skip_value(b: &[u8], mut p: usize) -> Option<usize> {
    match *b.get(p)? {
        b'"' => skip_string(b, p),
        b'{' | b'[' => {
            let mut depth = 0;
            while p < b.len() {
                match b[p] {
                    b'"' => {
                        p = skip_string(b, p)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(p + 1);
                        }
                    }
                    _ => {}
                }
                p += 1;
            }
            None
        }
        _ => {
            // a number, true, false or null: its characters are digits,
            // lowercase letters, '-', '+', '.' and 'E'
            let s = p;
            while p < b.len() && (b[p].is_ascii_lowercase() || b[p].is_ascii_digit() || matches!(b[p], b'-' | b'.' | b'+' | b'E')) {
                p += 1;
            }
            if p == s {
                None
            } else {
                Some(p)
            }
        }
    }
}

/// Finds the first member called name in the object text b: its value's range.
fn find_member(b: &[u8], name: &[u8]) -> Option<(usize, usize)> {
    let mut p = skip_ws(b, 0);
    if b.get(p) != Some(&b'{') {
        return None;
    }
    p += 1;
    loop {
        p = skip_ws(b, p);
        if b.get(p) != Some(&b'"') {
            return None;
        }
        let key_end = skip_string(b, p)?;
        let key = &b[p + 1..key_end - 1];
        p = skip_ws(b, key_end);
        if b.get(p) != Some(&b':') {
            return None;
        }
        let val = skip_ws(b, p + 1);
        let val_end = skip_value(b, val)?;
        if key_equals(key, name) {
            return Some((val, val_end));
        }
        p = skip_ws(b, val_end);
        if b.get(p) == Some(&b',') {
            p += 1;
        }
    }
}

fn key_equals(raw: &[u8], name: &[u8]) -> bool {
    if !raw.contains(&b'\\') {
        return raw == name;
    }
    raw.len() >= name.len() && unescape(raw) == name
}

fn hex4(b: &[u8]) -> Option<u32> {
    if b.len() < 4 {
        return None;
    }
    let mut v = 0;
    for &c in &b[..4] {
        v = v << 4 | (c as char).to_digit(16)?;
    }
    Some(v)
}

/// Decodes a JSON string body; lone surrogates become U+FFFD.
fn unescape(s: &[u8]) -> Vec<u8> {
    let mut o = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c != b'\\' {
            o.push(c);
            i += 1;
            continue;
        }
        let e = s.get(i + 1).copied().unwrap_or(b'\\');
        i += 2;
        let ch = match e {
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let u = hex4(&s[i.min(s.len())..]);
                i = (i + 4).min(s.len());
                match u {
                    Some(hi @ 0xD800..=0xDBFF) => {
                        match (s.get(i..i + 2), hex4(&s[(i + 2).min(s.len())..])) {
                            (Some(b"\\u"), Some(lo @ 0xDC00..=0xDFFF)) => {
                                i += 6;
                                char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)).unwrap()
                            }
                            _ => '\u{FFFD}',
                        }
                    }
                    Some(u) => char::from_u32(u).unwrap_or('\u{FFFD}'),
                    None => '\u{FFFD}',
                }
            }
            other => other as char, // \" \\ \/
        };
        let mut tmp = [0u8; 4];
        o.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
    }
    o
}

/// Appends s as a JSON string. Escapes '"', '\\', \n, \r, \t and other
/// control characters (as \u00XX): the same bytes as the Go SDK's AppendQuote.
fn quote(o: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    o.push(b'"');
    for &c in s.as_bytes() {
        match c {
            b'"' => o.extend_from_slice(b"\\\""),
            b'\\' => o.extend_from_slice(b"\\\\"),
            b'\n' => o.extend_from_slice(b"\\n"),
            b'\r' => o.extend_from_slice(b"\\r"),
            b'\t' => o.extend_from_slice(b"\\t"),
            0..=0x1f => o.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(c >> 4) as usize], HEX[(c & 15) as usize]]),
            _ => o.push(c),
        }
    }
    o.push(b'"');
}

// ------------------------------------------------------------------ numbers

/// Parses a JSON number, correctly rounded (ties to even); None when b is
/// not one or the number is too large for f64 (as in the Go SDK). Numbers
/// of at most 15 significant digits and a power of ten up to 22 take an
/// exact fast path (Clinger's); the others Rust's own parser.
fn parse_number(b: &[u8]) -> Option<f64> {
    let mut p = 0;
    let neg = b.first() == Some(&b'-');
    if neg {
        p = 1;
    }
    let mut w: u64 = 0; // the significant digits, while they fit
    let mut nd = 0; // significant digits seen
    let mut exp10: i32 = 0; // value = w × 10^exp10 when nd <= 19
    match b.get(p) {
        Some(b'0') => p += 1,
        Some(b'1'..=b'9') => {
            while p < b.len() && b[p].is_ascii_digit() {
                if nd < 19 {
                    w = w * 10 + (b[p] - b'0') as u64;
                }
                nd += 1;
                p += 1;
            }
        }
        _ => return None,
    }
    if b.get(p) == Some(&b'.') {
        p += 1;
        let s = p;
        while p < b.len() && b[p].is_ascii_digit() {
            if nd == 0 && b[p] == b'0' {
                exp10 -= 1; // leading zeros are not significant
            } else {
                if nd < 19 {
                    w = w * 10 + (b[p] - b'0') as u64;
                    exp10 -= 1;
                }
                nd += 1;
            }
            p += 1;
        }
        if p == s {
            return None;
        }
    }
    if matches!(b.get(p), Some(b'e') | Some(b'E')) {
        p += 1;
        let eneg = b.get(p) == Some(&b'-');
        if matches!(b.get(p), Some(b'+') | Some(b'-')) {
            p += 1;
        }
        let s = p;
        let mut x: i32 = 0;
        while p < b.len() && b[p].is_ascii_digit() {
            x = (x * 10 + (b[p] - b'0') as i32).min(100_000);
            p += 1;
        }
        if p == s {
            return None;
        }
        exp10 += if eneg { -x } else { x };
    }
    if p != b.len() {
        return None;
    }
    let v = if nd <= 15 && w < 1 << 53 && (-22..=22).contains(&exp10) {
        // Exact: w and 10^|exp10| are exact doubles, and one rounding follows.
        let w = w as f64;
        if exp10 >= 0 {
            w * POW10[exp10 as usize]
        } else {
            w / POW10[(-exp10) as usize]
        }
    } else {
        // Valid JSON number text is ASCII and a valid Rust float literal.
        let v: f64 = std::str::from_utf8(&b[neg as usize..]).ok()?.parse().ok()?;
        if v.is_infinite() {
            return None;
        }
        v
    };
    Some(if neg { -v } else { v })
}

/// A fixed buffer for one formatted number.
pub struct NumBuf {
    b: [u8; 40],
    n: usize,
}

impl NumBuf {
    pub fn new() -> Self {
        NumBuf { b: [0; 40], n: 0 }
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.b[..self.n]
    }
    fn push(&mut self, c: u8) {
        self.b[self.n] = c;
        self.n += 1;
    }
}

impl std::fmt::Write for NumBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let e = self.n + s.len();
        if e > self.b.len() {
            return Err(std::fmt::Error);
        }
        self.b[self.n..e].copy_from_slice(s.as_bytes());
        self.n = e;
        Ok(())
    }
}

/// Writes v as JSON into buf: the shortest text that reads back as v (the
/// nearer of two candidates, a tie going to the even digit), laid out like
/// JavaScript's Number.prototype.toString (exponent form from 1e21 up and
/// below 1e-6; "-0" for negative zero). Returns false for NaN and
/// infinities, which JSON cannot hold. Same algorithm as the C and
/// AssemblyScript SDKs; Rust's own `{}` rounds ties up instead.
pub fn format_f64(v: f64, buf: &mut NumBuf) -> bool {
    buf.n = 0;
    if !v.is_finite() {
        return false;
    }
    if v.is_sign_negative() {
        buf.push(b'-');
    }
    let v = v.abs();
    if v == 0.0 {
        buf.push(b'0');
        return true;
    }
    let mut digits = [0u8; 20];
    let (nd, point) = match shortest_fast(v, &mut digits) {
        Some(r) => r,
        None => shortest_exact(v, &mut digits),
    };
    let digits = &digits[..nd];
    let nd = nd as i32;
    if nd <= point && point <= 21 {
        digits.iter().for_each(|&c| buf.push(c));
        (nd..point).for_each(|_| buf.push(b'0'));
    } else if 0 < point && point <= 21 {
        digits[..point as usize].iter().for_each(|&c| buf.push(c));
        buf.push(b'.');
        digits[point as usize..].iter().for_each(|&c| buf.push(c));
    } else if -6 < point && point <= 0 {
        buf.push(b'0');
        buf.push(b'.');
        (point..0).for_each(|_| buf.push(b'0'));
        digits.iter().for_each(|&c| buf.push(c));
    } else {
        buf.push(digits[0]);
        if nd > 1 {
            buf.push(b'.');
            digits[1..].iter().for_each(|&c| buf.push(c));
        }
        let _ = write!(buf, "e{}{}", if point - 1 < 0 { '-' } else { '+' }, (point - 1).abs());
    }
    true
}

const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
    1e20, 1e21, 1e22,
];

/// Fast path: the integer n of at most 15 digits with n / 10^j == v, each
/// candidate checked with exactly rounded arithmetic (n < 2^53 and
/// 10^|j| <= 10^22 are exact). At 15 digits or fewer at most one candidate
/// reads back as v, so the first found is the shortest. Returns the digit
/// count and the decimal point (v = 0.digits × 10^point).
fn shortest_fast(v: f64, digits: &mut [u8; 20]) -> Option<(usize, i32)> {
    let k = v.log10().floor() as i32;
    for p in 1..=15 {
        let j = p - 1 - k;
        if !(-22..=22).contains(&j) {
            continue;
        }
        let est = if j >= 0 { v * POW10[j as usize] } else { v / POW10[(-j) as usize] };
        let n0 = est.round();
        for dn in [-1.0, 0.0, 1.0] {
            let n = n0 + dn;
            if !(1.0..1e15).contains(&n) {
                continue;
            }
            let back = if j >= 0 { n / POW10[j as usize] } else { n * POW10[(-j) as usize] };
            if back != v {
                continue;
            }
            let mut u = n as u64;
            let mut tmp = [0u8; 20];
            let mut nd = 0;
            while u > 0 {
                tmp[nd] = b'0' + (u % 10) as u8;
                u /= 10;
                nd += 1;
            }
            let point = nd as i32 - j;
            let lead = tmp.iter().take_while(|&&c| c == b'0').count();
            let mut out = 0;
            for i in (lead..nd).rev() {
                digits[out] = tmp[i];
                out += 1;
            }
            return Some((out, point));
        }
    }
    None
}

/// A big unsigned integer (little-endian 32-bit limbs) for the exact path.
#[derive(Clone)]
struct Big {
    n: usize,
    d: [u32; 40],
}

impl Big {
    fn from(v: u64) -> Big {
        let mut b = Big { n: 0, d: [0; 40] };
        let mut v = v;
        while v != 0 {
            b.d[b.n] = v as u32;
            b.n += 1;
            v >>= 32;
        }
        b
    }
    fn mul_small(&mut self, m: u32) {
        let mut carry = 0u64;
        for i in 0..self.n {
            let t = self.d[i] as u64 * m as u64 + carry;
            self.d[i] = t as u32;
            carry = t >> 32;
        }
        if carry != 0 {
            self.d[self.n] = carry as u32;
            self.n += 1;
        }
    }
    fn mul_pow10(&mut self, mut k: i32) {
        while k >= 9 {
            self.mul_small(1_000_000_000);
            k -= 9;
        }
        if k > 0 {
            self.mul_small(10u32.pow(k as u32));
        }
    }
    fn shl(&mut self, bits: i32) {
        let (limbs, s) = ((bits / 32) as usize, bits % 32);
        if self.n == 0 {
            return;
        }
        if s != 0 {
            let mut carry = 0u32;
            for i in 0..self.n {
                let v = self.d[i];
                self.d[i] = v << s | carry;
                carry = v >> (32 - s);
            }
            if carry != 0 {
                self.d[self.n] = carry;
                self.n += 1;
            }
        }
        if limbs > 0 {
            self.d.copy_within(0..self.n, limbs);
            self.d[..limbs].iter_mut().for_each(|x| *x = 0);
            self.n += limbs;
        }
    }
    fn cmp(&self, o: &Big) -> std::cmp::Ordering {
        if self.n != o.n {
            return self.n.cmp(&o.n);
        }
        for i in (0..self.n).rev() {
            if self.d[i] != o.d[i] {
                return self.d[i].cmp(&o.d[i]);
            }
        }
        std::cmp::Ordering::Equal
    }
    fn add(&self, o: &Big) -> Big {
        let mut r = Big { n: self.n.max(o.n), d: [0; 40] };
        let mut carry = 0u64;
        for i in 0..r.n {
            let t = carry + self.d[i] as u64 + o.d[i] as u64;
            r.d[i] = t as u32;
            carry = t >> 32;
        }
        if carry != 0 {
            r.d[r.n] = carry as u32;
            r.n += 1;
        }
        r
    }
    /// self -= o, with self >= o.
    fn sub(&mut self, o: &Big) {
        let mut borrow = 0i64;
        for i in 0..self.n {
            let t = self.d[i] as i64 - o.d[i] as i64 - borrow;
            borrow = (t < 0) as i64;
            self.d[i] = (t + (borrow << 32)) as u32;
        }
        while self.n > 0 && self.d[self.n - 1] == 0 {
            self.n -= 1;
        }
    }
}

/// Exact path: Burger & Dybvig's free-format algorithm ("Printing
/// floating-point numbers quickly and accurately", 1996).
fn shortest_exact(v: f64, digits: &mut [u8; 20]) -> (usize, i32) {
    use std::cmp::Ordering::*;
    let bits = v.to_bits();
    let be = (bits >> 52 & 0x7FF) as i32;
    let mut f = bits & ((1 << 52) - 1);
    let e = if be != 0 {
        f |= 1 << 52;
        be - 1075
    } else {
        -1074
    };
    let even = f & 1 == 0;
    let boundary = f == 1 << 52 && be > 1; // the gap below v is half the gap above
    let (mut r, mut s, mut mp, mut mm);
    if e >= 0 {
        r = Big::from(f);
        r.shl(e + if boundary { 2 } else { 1 });
        s = Big::from(if boundary { 4 } else { 2 });
        mp = Big::from(1);
        mp.shl(e + boundary as i32);
        mm = Big::from(1);
        mm.shl(e);
    } else {
        r = Big::from(f);
        r.shl(if boundary { 2 } else { 1 });
        s = Big::from(1);
        s.shl(-e + if boundary { 2 } else { 1 });
        mp = Big::from(if boundary { 2 } else { 1 });
        mm = Big::from(1);
    }
    let mut k = (v.log10() - 1e-10).ceil() as i32;
    if k >= 0 {
        s.mul_pow10(k);
    } else {
        r.mul_pow10(-k);
        mp.mul_pow10(-k);
        mm.mul_pow10(-k);
    }
    let c = r.add(&mp).cmp(&s);
    if if even { c != Less } else { c == Greater } {
        k += 1;
    } else {
        r.mul_small(10);
        mp.mul_small(10);
        mm.mul_small(10);
    }
    let mut nd = 0;
    loop {
        let mut d = 0u8;
        while r.cmp(&s) != Less {
            r.sub(&s);
            d += 1;
        }
        let lo = r.cmp(&mm);
        let tc1 = if even { lo != Greater } else { lo == Less };
        let hi = r.add(&mp).cmp(&s);
        let tc2 = if even { hi != Less } else { hi == Greater };
        if !tc1 && !tc2 {
            digits[nd] = b'0' + d;
            nd += 1;
            r.mul_small(10);
            mp.mul_small(10);
            mm.mul_small(10);
            continue;
        }
        if tc1 && tc2 {
            // the nearer one; a tie goes to the even digit
            let half = r.add(&r).cmp(&s);
            if half == Greater || (half == Equal && d % 2 == 1) {
                d += 1;
            }
        } else if tc2 {
            d += 1;
        }
        digits[nd] = b'0' + d;
        return (nd + 1, k);
    }
}
