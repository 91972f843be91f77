package sluice

import (
	"encoding/binary"
	"math"
	"math/bits"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// This file is a small JSON scanner over bytes: it finds where values start
// and end without decoding them, which is all that reading and editing the
// top-level fields of a record needs. It does not validate nested values
// (the host validates every output value); it never panics on malformed
// input, it reports it with a negative position instead.

// skipWS returns the index of the first byte at or after i that is not JSON
// whitespace.
func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index just past the string that starts with the
// quote at b[i], and whether it contains escapes; -1 if it is unterminated.
// It looks at 8 bytes at a time for a quote or a backslash.
func skipString(b []byte, i int) (end int, esc bool) {
	i++
	for {
		for i+8 <= len(b) {
			x := binary.LittleEndian.Uint64(b[i:])
			q := x ^ (lsb * '"')
			s := x ^ (lsb * '\\')
			if m := ((q-lsb)&^q | (s-lsb)&^s) & msb; m != 0 {
				i += bits.TrailingZeros64(m) >> 3 // the first quote or backslash
				break
			}
			i += 8
		}
		if i >= len(b) {
			return -1, esc
		}
		switch b[i] {
		case '"':
			return i + 1, esc
		case '\\':
			esc = true
			i += 2
		default:
			i++
		}
	}
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// skipValue returns the index just past the JSON value that starts at b[i],
// or -1 when there is none.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch c := b[i]; c {
	case '"':
		end, _ := skipString(b, i)
		return end
	case '{', '[':
		return skipNested(b, i)
	case 't':
		return skipLiteral(b, i, "true")
	case 'f':
		return skipLiteral(b, i, "false")
	case 'n':
		return skipLiteral(b, i, "null")
	default:
		if c != '-' && (c < '0' || c > '9') {
			return -1
		}
		i++
		for i < len(b) {
			switch c := b[i]; {
			case c >= '0' && c <= '9', c == '.', c == 'e', c == 'E', c == '+', c == '-':
				i++
			default:
				return i
			}
		}
		return i
	}
}

func skipLiteral(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// skipNested returns the index just past the object or array that starts at
// b[i], matching brackets and skipping strings, or -1.
func skipNested(b []byte, i int) int {
	depth := 0
	for i < len(b) {
		switch b[i] {
		case '"':
			end, _ := skipString(b, i)
			if end < 0 {
				return -1
			}
			i = end
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
		i++
	}
	return -1
}

// Kind is the type of a JSON value.
type Kind uint8

// The kinds of JSON values; KindMissing is the kind of a field that is not there.
const (
	KindMissing Kind = iota
	KindNull
	KindBool
	KindNumber
	KindString
	KindArray
	KindObject
)

var kindNames = [...]string{"missing", "null", "bool", "number", "string", "array", "object"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// KindOf returns the kind of the raw JSON value v (by its first byte).
func KindOf(v []byte) Kind {
	if len(v) == 0 {
		return KindMissing
	}
	switch c := v[0]; c {
	case '"':
		return KindString
	case '{':
		return KindObject
	case '[':
		return KindArray
	case 't', 'f':
		return KindBool
	case 'n':
		return KindNull
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			return KindNumber
		}
		return KindMissing
	}
}

// ParseFloat returns the number in the raw JSON value v.
func ParseFloat(v []byte) (float64, bool) {
	if f, ok := parseSimpleFloat(v); ok {
		return f, true
	}
	if KindOf(v) != KindNumber {
		return 0, false
	}
	f, err := strconv.ParseFloat(bytesView(v), 64)
	return f, err == nil
}

// pow10 holds the powers of ten that float64 represents exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// parseSimpleFloat parses -?digits(.digits)? with at most 15 digits, the
// common case, exactly: the digits make an integer below 2^53 and the
// division by an exact power of ten rounds correctly (Clinger's fast path).
// Anything else, including what is not JSON, is left to strconv.
func parseSimpleFloat(v []byte) (float64, bool) {
	i := 0
	neg := len(v) > 0 && v[0] == '-'
	if neg {
		i++
	}
	start := i
	var m uint64
	digits, frac := 0, -1
	for ; i < len(v); i++ {
		c := v[i]
		if c >= '0' && c <= '9' {
			m = m*10 + uint64(c-'0')
			digits++
			continue
		}
		if c == '.' && frac < 0 && digits > 0 {
			frac = digits
			continue
		}
		return 0, false
	}
	if digits == 0 || digits > 15 || frac == digits {
		return 0, false
	}
	if v[start] == '0' && digits > 1 && frac != 1 {
		return 0, false // a leading zero is not JSON
	}
	f := float64(m)
	if frac >= 0 {
		f /= pow10[digits-frac]
	}
	if neg {
		f = -f
	}
	return f, true
}

// ParseInt returns the integer in the raw JSON value v; a number with a
// fraction or out of the int64 range is not an integer.
func ParseInt(v []byte) (int64, bool) {
	if KindOf(v) != KindNumber {
		return 0, false
	}
	// Fast path: plain digits.
	if len(v) <= 18 {
		neg := v[0] == '-'
		d := v
		if neg {
			d = v[1:]
		}
		var n int64
		plain := len(d) > 0
		for _, c := range d {
			if c < '0' || c > '9' {
				plain = false
				break
			}
			n = n*10 + int64(c-'0')
		}
		if plain {
			if neg {
				n = -n
			}
			return n, true
		}
	}
	f, err := strconv.ParseFloat(bytesView(v), 64)
	if err != nil || f != math.Trunc(f) || f < -(1<<63) || f >= 1<<63 {
		return 0, false
	}
	return int64(f), true
}

// ParseBool returns the boolean in the raw JSON value v.
func ParseBool(v []byte) (value, ok bool) {
	switch string(v) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// AppendUnquote appends the decoded contents of the raw JSON string v to
// dst. ok is false if v is not a JSON string.
func AppendUnquote(dst, v []byte) (_ []byte, ok bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return dst, false
	}
	s := v[1 : len(v)-1]
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		i++
		if i >= len(s) {
			return dst, false
		}
		switch s[i] {
		case '"', '\\', '/':
			dst = append(dst, s[i])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(s, i+1)
			if !ok {
				return dst, false
			}
			i += 4
			if utf16.IsSurrogate(r) {
				if r2, ok := hex4(s, i+3); ok && i+2 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						i += 6
						dst = utf8.AppendRune(dst, dec)
						continue
					}
				}
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
		default:
			return dst, false
		}
	}
	return dst, true
}

func hex4(s []byte, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range s[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

const hexDigits = "0123456789abcdef"

// AppendQuote appends s to dst as a JSON string, escaping quotes,
// backslashes and control characters, and replacing invalid UTF-8 with
// U+FFFD.
func AppendQuote[S ~string | ~[]byte](dst []byte, s S) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
			if r == utf8.RuneError && size == 1 {
				dst = appendRun(dst, s[start:i])
				dst = append(dst, `\ufffd`...)
				i++
				start = i
				continue
			}
			i += size
			continue
		}
		dst = appendRun(dst, s[start:i])
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	dst = appendRun(dst, s[start:])
	return append(dst, '"')
}

// appendRun appends s to dst without memmove (see copy.go); the runs it
// gets are short.
func appendRun[S ~string | ~[]byte](dst []byte, s S) []byte {
	n := len(dst)
	if cap(dst)-n < len(s) {
		return append(dst, s...)
	}
	dst = dst[:n+len(s)]
	for i := 0; i < len(s); i++ {
		dst[n+i] = s[i]
	}
	return dst
}

// AppendFloat appends f as a JSON number the way encoding/json writes it.
// NaN and infinities have no JSON form; ok is false for them.
func AppendFloat(dst []byte, f float64) (_ []byte, ok bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return dst, false
	}
	if b, ok := appendSimpleFloat(dst, f); ok {
		return b, true
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst, true
}

// appendSimpleFloat writes f in its shortest form when that has at most 4
// decimals and |f| < 1e9, the common case, without strconv: the first p
// for which round(f*10^p)/10^p == f gives the digits (for such f the
// decimals are at least 1e-4 apart, far more than f's precision, so the
// shortest form is unique and the same as strconv's).
func appendSimpleFloat(dst []byte, f float64) ([]byte, bool) {
	abs := math.Abs(f)
	if !(abs < 1e9) || (f == 0 && math.Signbit(f)) {
		return dst, false
	}
	// RoundToEven is one wasm instruction (Round is a call); they differ
	// only on ties, which never pass the test.
	p := 0
	m := math.RoundToEven(abs)
	for m != abs {
		if p++; p > 4 {
			return dst, false
		}
		m = math.RoundToEven(abs * pow10[p])
		if m/pow10[p] == abs {
			break
		}
	}
	// The digits of m, least significant first, with a point after the
	// p decimals and at least one digit before it (5 at p=2 is 0.05),
	// written from the middle of buf backwards; then one copy of 16 bytes
	// (what lies past the number in dst is overwritten or cut off).
	n := uint64(m)
	var buf [32]byte
	i := 16
	for range p {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
	}
	if p > 0 {
		i--
		buf[i] = '.'
	}
	for {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	if f < 0 {
		i--
		buf[i] = '-'
	}
	k := len(dst)
	dst = grow(dst, 16)
	put16(unsafe.Add(unsafe.Pointer(unsafe.SliceData(dst)), k), buf[i:])
	return dst[:k+16-i], true
}

// Elements yields the elements of the raw JSON array v, each as raw JSON.
// It yields nothing if v is not an array, and stops at the first malformed
// element.
func Elements(v []byte) func(yield func([]byte) bool) {
	return func(yield func([]byte) bool) {
		i := skipWS(v, 0)
		if i >= len(v) || v[i] != '[' {
			return
		}
		i = skipWS(v, i+1)
		if i < len(v) && v[i] == ']' {
			return
		}
		for i < len(v) {
			end := skipValue(v, i)
			if end < 0 {
				return
			}
			if !yield(v[i:end]) {
				return
			}
			i = skipWS(v, end)
			if i >= len(v) || v[i] != ',' {
				return
			}
			i = skipWS(v, i+1)
		}
	}
}

// bytesView returns b as a string without copying; the string must not
// outlive a change to b.
func bytesView(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
