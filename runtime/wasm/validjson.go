package wasm

import (
	"math/bits"
	"unicode/utf8"
)

// validJSON reports whether b is exactly one JSON value (RFC 8259) with
// optional surrounding whitespace, nested at most maxDepth deep, whose
// strings are valid UTF-8. It is several times faster than
// encoding/json.Valid, which matters on the per-record path, and stricter
// (encoding/json accepts invalid UTF-8 in strings).
func validJSON(b []byte) bool {
	if validFlat(b) {
		return true
	}
	var stackBuf [64]byte
	stack := stackBuf[:0] // '{' or '[' per open container
	i := ws(b, 0)

value:
	if i >= len(b) {
		return false
	}
	switch c := b[i]; c {
	case '{':
		if len(stack) >= maxDepth {
			return false
		}
		i = ws(b, i+1)
		if i < len(b) && b[i] == '}' {
			i++
			goto after
		}
		stack = append(stack, '{')
		goto key
	case '[':
		if len(stack) >= maxDepth {
			return false
		}
		i = ws(b, i+1)
		if i < len(b) && b[i] == ']' {
			i++
			goto after
		}
		stack = append(stack, '[')
		goto value
	case '"':
		if i = scanString(b, i); i < 0 {
			return false
		}
	case 't':
		if len(b)-i < 4 || string(b[i:i+4]) != "true" {
			return false
		}
		i += 4
	case 'f':
		if len(b)-i < 5 || string(b[i:i+5]) != "false" {
			return false
		}
		i += 5
	case 'n':
		if len(b)-i < 4 || string(b[i:i+4]) != "null" {
			return false
		}
		i += 4
	default:
		if i = scanNumber(b, i); i < 0 {
			return false
		}
	}

after:
	i = ws(b, i)
	if len(stack) == 0 {
		return i == len(b)
	}
	if i >= len(b) {
		return false
	}
	switch b[i] {
	case ',':
		i = ws(b, i+1)
		if stack[len(stack)-1] == '{' {
			goto key
		}
		goto value
	case '}':
		if stack[len(stack)-1] != '{' {
			return false
		}
	case ']':
		if stack[len(stack)-1] != '[' {
			return false
		}
	default:
		return false
	}
	stack = stack[:len(stack)-1]
	i++
	goto after

key:
	if i >= len(b) || b[i] != '"' {
		return false
	}
	if i = scanString(b, i); i < 0 {
		return false
	}
	i = ws(b, i)
	if i >= len(b) || b[i] != ':' {
		return false
	}
	i = ws(b, i+1)
	goto value
}

// maxDepth is encoding/json's nesting limit.
const maxDepth = 10000

func ws(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// plain[c] is true for the bytes a string holds as they are.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// scanString returns the index past the string that starts at the quote at
// b[i], or -1.
func scanString(b []byte, i int) int {
	i++
	for {
		for i < len(b) && plain[b[i]] {
			i++
		}
		if i >= len(b) {
			return -1
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			if i+1 >= len(b) {
				return -1
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if len(b)-i < 6 || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return -1
				}
				i += 6
			default:
				return -1
			}
		case c < 0x20:
			return -1
		default: // non-ASCII
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return -1
			}
			i += size
		}
	}
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// scanNumber returns the index past the number at b[i], or -1.
func scanNumber(b []byte, i int) int {
	if i < len(b) && b[i] == '-' {
		i++
	}
	if i >= len(b) {
		return -1
	}
	switch c := b[i]; {
	case c == '0':
		i++
	case c >= '1' && c <= '9':
		i++
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		i++
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == start {
			return -1
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == start {
			return -1
		}
	}
	return i
}

// validFlat reports whether b is a compact object of plain strings (ASCII,
// no escapes) and numbers, the shape of most records, checked in one
// straight pass. False means only that validJSON must look closer.
func validFlat(b []byte) bool {
	n := len(b)
	if n < 2 || b[0] != '{' || b[n-1] != '}' {
		return false
	}
	if n == 2 {
		return true
	}
	i := 1
	for {
		if b[i] != '"' {
			return false
		}
		if i = plainString(b, i+1); i < 0 || i >= n || b[i] != ':' {
			return false
		}
		if i++; i >= n {
			return false
		}
		switch c := b[i]; {
		case c == '"':
			i = plainString(b, i+1)
		case c == '-' || c >= '0' && c <= '9':
			i = scanNumber(b, i)
		default:
			return false
		}
		if i < 0 || i >= n {
			return false
		}
		switch b[i] {
		case ',':
			if i++; i >= n {
				return false
			}
		case '}':
			return i == n-1
		default:
			return false
		}
	}
}

// Bytes broadcast to a word, for plainString.
const (
	lsb   = 0x0101010101010101
	msb   = 0x8080808080808080
	quote = lsb * '"'
	bslsh = lsb * '\\'
	space = lsb * 0x20
)

// plainString returns the index past the quote that closes the string whose
// contents start at b[i], or -1 if a byte before it is a backslash, a
// control character or not ASCII. It reads eight bytes at a time: m flags
// such bytes and the quote, its lowest set bit the first of them (a
// subtraction's borrow can flag bytes after it, never before).
func plainString(b []byte, i int) int {
	for ; i+8 <= len(b); i += 8 {
		x := le.Uint64(b[i:])
		q, e := x^quote, x^bslsh
		if m := ((q-lsb)&^q | (e-lsb)&^e | (x-space)&^x | x) & msb; m != 0 {
			i += bits.TrailingZeros64(m) >> 3
			if b[i] == '"' {
				return i + 1
			}
			return -1
		}
	}
	for ; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case !plain[c]:
			return -1
		}
	}
	return -1
}
