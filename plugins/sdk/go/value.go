package sluice

import "strconv"

// Value is a JSON value to Set. Make one with String, Float, Int, Bool,
// Null or Raw; it is a small struct passed by value, so building one does
// not allocate.
type Value struct {
	kind Kind
	s    string
	f    float64
	i    int64
	raw  []byte
	isI  bool
}

// String is a JSON string.
func String(s string) Value { return Value{kind: KindString, s: s} }

// Float is a JSON number.
func Float(f float64) Value { return Value{kind: KindNumber, f: f} }

// Int is a JSON number written as an integer.
func Int(i int64) Value { return Value{kind: KindNumber, i: i, isI: true} }

// Bool is true or false.
func Bool(b bool) Value {
	if b {
		return Value{kind: KindBool, i: 1}
	}
	return Value{kind: KindBool}
}

// Null is null.
func Null() Value { return Value{kind: KindNull} }

// Raw is already-encoded JSON, written as is.
func Raw(json []byte) Value { return Value{kind: rawKind, raw: json} }

// rawKind marks a Value holding already-encoded JSON.
const rawKind = Kind(255)

func (v *Value) appendJSON(dst []byte) ([]byte, bool) {
	switch v.kind {
	case KindString:
		return AppendQuote(dst, v.s), true
	case KindNumber:
		if v.isI {
			return strconv.AppendInt(dst, v.i, 10), true
		}
		return AppendFloat(dst, v.f)
	case KindBool:
		return strconv.AppendBool(dst, v.i != 0), true
	case KindNull:
		return append(dst, "null"...), true
	case rawKind:
		return append(dst, v.raw...), true
	}
	return dst, false
}

// String describes v for error messages.
func (v Value) String() string {
	if b, ok := v.appendJSON(nil); ok {
		return string(b)
	}
	if v.kind == KindNumber {
		return strconv.FormatFloat(v.f, 'g', -1, 64)
	}
	return v.kind.String()
}
