package clickhouse

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
	"github.com/tidwall/gjson"
)

// captureCol is a driver.BatchColumn that keeps what the builder appends.
type captureCol struct{ v any }

func (c *captureCol) Append(v any) error    { c.v = v; return nil }
func (c *captureCol) AppendRow(v any) error { return errors.New("AppendRow not expected") }

// show formats a value appended to a column: strings quoted, times in
// RFC 3339 UTC, NULL for nil pointers, slices in brackets.
func show(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("%q", x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case uuid.UUID:
		return x.String()
	case decimal.Decimal:
		return x.String()
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer:
		if rv.IsNil() {
			return "NULL"
		}
		return show(rv.Elem().Interface())
	case reflect.Slice:
		parts := make([]string, rv.Len())
		for i := range parts {
			parts[i] = show(rv.Index(i).Interface())
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	return fmt.Sprint(v)
}

// convert runs one JSON value (empty: missing) through the builder of typ
// and returns the value it appends, or the error.
func convert(t *testing.T, typ, json string) (string, error) {
	t.Helper()
	b, err := newBuilder(typ)
	if err != nil {
		t.Fatalf("newBuilder(%s): %v", typ, err)
	}
	v := val{}
	if json != "" {
		v.r = gjson.Parse(json)
	}
	if err := b.add(&v); err != nil {
		return "", err
	}
	var c captureCol
	if err := b.appendTo(&c); err != nil {
		t.Fatalf("appendTo: %v", err)
	}
	rv := reflect.ValueOf(c.v)
	if rv.Len() != 1 {
		t.Fatalf("%s: appended %d values, want 1", typ, rv.Len())
	}
	return show(rv.Index(0).Interface()), nil
}

func TestConvert(t *testing.T) {
	tests := []struct {
		name    string
		typ     string
		json    string // "" is a missing field
		want    string
		wantErr string
	}{
		{name: "string", typ: "String", json: `"héllo\n"`, want: `"héllo\n"`},
		{name: "string from number", typ: "String", json: `12.50`, want: `"12.50"`},
		{name: "string from bool", typ: "String", json: `true`, want: `"true"`},
		{name: "string from object", typ: "String", json: `{"a": [1, 2]}`, want: `"{\"a\": [1, 2]}"`},
		{name: "string missing", typ: "String", json: ``, want: `""`},
		{name: "string null", typ: "String", json: `null`, want: `""`},
		{name: "fixedstring", typ: "FixedString(4)", json: `"abcd"`, want: `"abcd"`},
		{name: "fixedstring short", typ: "FixedString(4)", json: `"ab"`, want: `"ab"`},
		{name: "fixedstring long", typ: "FixedString(4)", json: `"abcde"`, wantErr: "5 bytes, longer than FixedString(4)"},
		{name: "int8", typ: "Int8", json: `-128`, want: "-128"},
		{name: "int8 overflow", typ: "Int8", json: `128`, wantErr: "out of range for Int8"},
		{name: "int8 bool", typ: "Int8", json: `true`, want: "1"},
		{name: "int16", typ: "Int16", json: `-32768`, want: "-32768"},
		{name: "int32 from string", typ: "Int32", json: `"2147483647"`, want: "2147483647"},
		{name: "int32 overflow", typ: "Int32", json: `2147483648`, wantErr: "out of range for Int32"},
		{name: "int64 max", typ: "Int64", json: `9223372036854775807`, want: "9223372036854775807"},
		{name: "int64 overflow", typ: "Int64", json: `9223372036854775808`, wantErr: "out of range for Int64"},
		{name: "int64 exponent", typ: "Int64", json: `1e3`, want: "1000"},
		{name: "int64 integral float", typ: "Int64", json: `5.0`, want: "5"},
		{name: "int fraction", typ: "Int32", json: `1.5`, wantErr: "not an integer"},
		{name: "int from text", typ: "Int32", json: `"abc"`, wantErr: "not an integer"},
		{name: "int from object", typ: "Int32", json: `{}`, wantErr: "not an integer"},
		{name: "int missing", typ: "Int32", json: ``, want: "0"},
		{name: "uint8", typ: "UInt8", json: `255`, want: "255"},
		{name: "uint8 overflow", typ: "UInt8", json: `256`, wantErr: "out of range for UInt8"},
		{name: "uint8 negative", typ: "UInt8", json: `-1`, wantErr: "out of range for UInt8"},
		{name: "uint8 from bool", typ: "UInt8", json: `false`, want: "0"},
		{name: "uint16", typ: "UInt16", json: `65535`, want: "65535"},
		{name: "uint32", typ: "UInt32", json: `4294967295`, want: "4294967295"},
		{name: "uint64 max", typ: "UInt64", json: `18446744073709551615`, want: "18446744073709551615"},
		{name: "uint64 max string", typ: "UInt64", json: `"18446744073709551615"`, want: "18446744073709551615"},
		{name: "uint64 overflow", typ: "UInt64", json: `18446744073709551616`, wantErr: "out of range for UInt64"},
		{name: "uint64 negative zero", typ: "UInt64", json: `-0`, want: "0"},
		{name: "float64", typ: "Float64", json: `-1.25e-3`, want: "-0.00125"},
		{name: "float64 from string", typ: "Float64", json: `"3.5"`, want: "3.5"},
		{name: "float64 nan string", typ: "Float64", json: `"NaN"`, want: "NaN"},
		{name: "float64 bool", typ: "Float64", json: `true`, wantErr: "not a number"},
		{name: "float32", typ: "Float32", json: `1.5`, want: "1.5"},
		{name: "float32 overflow", typ: "Float32", json: `1e39`, wantErr: "out of range for Float32"},
		{name: "bool true", typ: "Bool", json: `true`, want: "true"},
		{name: "bool 0", typ: "Bool", json: `0`, want: "false"},
		{name: "bool text", typ: "Bool", json: `"yes"`, wantErr: "not a boolean (true, false, 0 or 1)"},
		{name: "date", typ: "Date", json: `"2024-02-29"`, want: "2024-02-29T00:00:00Z"},
		{name: "date from rfc3339", typ: "Date", json: `"2024-02-29T23:30:00-01:00"`, want: "2024-03-01T00:00:00Z"},
		{name: "date from unix", typ: "Date", json: `1709251200`, want: "2024-03-01T00:00:00Z"},
		{name: "date before 1970", typ: "Date", json: `"1969-12-31"`, wantErr: "out of range for Date (1970-01-01 to 2149-06-06)"},
		{name: "date missing", typ: "Date", json: ``, want: "1970-01-01T00:00:00Z"},
		{name: "date32", typ: "Date32", json: `"1950-01-01"`, want: "1950-01-01T00:00:00Z"},
		{name: "datetime rfc3339", typ: "DateTime", json: `"2024-05-01T12:00:00Z"`, want: "2024-05-01T12:00:00Z"},
		{name: "datetime offset", typ: "DateTime", json: `"2024-05-01T14:00:00+02:00"`, want: "2024-05-01T12:00:00Z"},
		{name: "datetime space no zone", typ: "DateTime", json: `"2024-05-01 12:00:00"`, want: "2024-05-01T12:00:00Z"},
		{name: "datetime seconds", typ: "DateTime", json: `1714564800`, want: "2024-05-01T12:00:00Z"},
		{name: "datetime millis", typ: "DateTime", json: `1714564800123`, want: "2024-05-01T12:00:00.123Z"},
		{name: "datetime micros", typ: "DateTime", json: `1714564800123456`, want: "2024-05-01T12:00:00.123456Z"},
		{name: "datetime nanos", typ: "DateTime", json: `1714564800123456789`, want: "2024-05-01T12:00:00.123456789Z"},
		{name: "datetime fractional seconds", typ: "DateTime", json: `1714564800.5`, want: "2024-05-01T12:00:00.5Z"},
		{name: "datetime seconds string", typ: "DateTime", json: `"1714564800"`, want: "2024-05-01T12:00:00Z"},
		{name: "datetime tz column", typ: "DateTime('Europe/Berlin')", json: `"2024-05-01T12:00:00Z"`, want: "2024-05-01T12:00:00Z"},
		{name: "datetime negative", typ: "DateTime", json: `-1`, wantErr: "out of range for DateTime (1970-01-01T00:00:00Z to 2106-02-07T06:28:15Z)"},
		{name: "datetime bad text", typ: "DateTime", json: `"yesterday"`, wantErr: "not a time (an RFC 3339 string or a unix timestamp)"},
		{name: "datetime bool", typ: "DateTime", json: `true`, wantErr: "not a time (an RFC 3339 string or a unix timestamp)"},
		{name: "datetime64", typ: "DateTime64(3)", json: `"2024-05-01T12:00:00.123456Z"`, want: "2024-05-01T12:00:00.123456Z"},
		{name: "datetime64 tz", typ: "DateTime64(6, 'UTC')", json: `1714564800123456`, want: "2024-05-01T12:00:00.123456Z"},
		{name: "datetime64 before 1970", typ: "DateTime64(3)", json: `"1960-01-01T00:00:00Z"`, want: "1960-01-01T00:00:00Z"},
		{name: "datetime64 too late", typ: "DateTime64(3)", json: `"2300-01-01T00:00:00Z"`, wantErr: "out of range for DateTime64(3) (1900-01-01T00:00:00Z to 2299-12-31T23:59:59Z)"},
		{name: "uuid", typ: "UUID", json: `"6BA7B810-9DAD-11D1-80B4-00C04FD430C8"`, want: "6ba7b810-9dad-11d1-80b4-00c04fd430c8"},
		{name: "uuid bad", typ: "UUID", json: `"6ba7b810"`, wantErr: "not a UUID"},
		{name: "uuid number", typ: "UUID", json: `7`, wantErr: "not a UUID"},
		{name: "decimal", typ: "Decimal(9, 2)", json: `12.345`, want: "12.35"},
		{name: "decimal string", typ: "Decimal(9, 2)", json: `"-0.5"`, want: "-0.5"},
		{name: "decimal overflow", typ: "Decimal(9, 2)", json: `10000000`, wantErr: "out of range for Decimal(9, 2)"},
		{name: "decimal64", typ: "Decimal64(4)", json: `1e3`, want: "1000"},
		{name: "decimal bool", typ: "Decimal(9, 2)", json: `true`, wantErr: "not a decimal number"},
		{name: "enum name", typ: "Enum8('on' = 1, 'off' = 0)", json: `"on"`, want: `"on"`},
		{name: "enum number", typ: "Enum8('on' = 1, 'off' = 0)", json: `0`, want: `"off"`},
		{name: "enum missing", typ: "Enum16('b' = 2, 'a' = -1)", json: ``, want: `"a"`},
		{name: "enum bad", typ: "Enum8('on' = 1, 'off' = 0)", json: `"maybe"`, wantErr: "not a name of Enum8 ('off', 'on')"},
		{name: "nullable null", typ: "Nullable(Int32)", json: `null`, want: "NULL"},
		{name: "nullable missing", typ: "Nullable(String)", json: ``, want: "NULL"},
		{name: "nullable value", typ: "Nullable(Float64)", json: `2.5`, want: "2.5"},
		{name: "nullable bad", typ: "Nullable(UInt8)", json: `-5`, wantErr: "out of range for UInt8"},
		{name: "lowcardinality", typ: "LowCardinality(String)", json: `"x"`, want: `"x"`},
		{name: "lowcardinality nullable", typ: "LowCardinality(Nullable(String))", json: `null`, want: "NULL"},
		{name: "array", typ: "Array(Int32)", json: `[1, -2, 3]`, want: "[1 -2 3]"},
		{name: "array empty", typ: "Array(String)", json: `[]`, want: "[]"},
		{name: "array missing", typ: "Array(String)", json: ``, want: "[]"},
		{name: "array null element", typ: "Array(Int32)", json: `[1, null]`, want: "[1 0]"},
		{name: "array nullable", typ: "Array(Nullable(String))", json: `["a", null]`, want: `["a" NULL]`},
		{name: "array lowcardinality", typ: "Array(LowCardinality(String))", json: `["a"]`, want: `["a"]`},
		{name: "array datetime", typ: "Array(DateTime)", json: `[0, "2024-05-01T12:00:00Z"]`, want: "[1970-01-01T00:00:00Z 2024-05-01T12:00:00Z]"},
		{name: "array bad element", typ: "Array(UInt8)", json: `[1, 2, 300]`, wantErr: "element 2: out of range for UInt8"},
		{name: "array not array", typ: "Array(UInt8)", json: `5`, wantErr: "not an array"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := convert(t, tt.typ, tt.json)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("%s %s: got %s, want error %q", tt.typ, tt.json, got, tt.wantErr)
				}
				if err.Error() != tt.wantErr {
					t.Fatalf("%s %s: got error %q, want %q", tt.typ, tt.json, err, tt.wantErr)
				}
				if !errors.Is(err, ErrConvert) {
					t.Fatalf("%s %s: error %v does not wrap ErrConvert", tt.typ, tt.json, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("%s %s: got error %v, want %s", tt.typ, tt.json, err, tt.want)
			}
			if got != tt.want {
				t.Fatalf("%s %s: got %s, want %s", tt.typ, tt.json, got, tt.want)
			}
		})
	}
}

func TestConvertMetadata(t *testing.T) {
	received := time.Date(2024, 5, 1, 12, 0, 0, 500, time.UTC)
	tests := []struct {
		name    string
		typ     string
		v       val
		want    string
		wantErr string
	}{
		{name: "seq", typ: "UInt64", v: val{kind: vUint, u: 1<<64 - 1}, want: "18446744073709551615"},
		{name: "seq into Int64", typ: "Int64", v: val{kind: vUint, u: 1 << 63}, wantErr: "out of range for Int64"},
		{name: "part into UInt32", typ: "UInt32", v: val{kind: vUint, u: 7}, want: "7"},
		{name: "seq into String", typ: "String", v: val{kind: vUint, u: 42}, want: `"42"`},
		{name: "device", typ: "LowCardinality(String)", v: val{kind: vStr, s: "dev-1"}, want: `"dev-1"`},
		{name: "empty key into Nullable", typ: "Nullable(String)", v: val{kind: vStr}, want: "NULL"},
		{name: "received", typ: "DateTime64(9)", v: val{kind: vTime, t: received}, want: "2024-05-01T12:00:00.0000005Z"},
		{name: "received into String", typ: "String", v: val{kind: vTime, t: received}, want: `"2024-05-01T12:00:00.0000005Z"`},
		{name: "received zero", typ: "DateTime", v: val{kind: vTime}, want: "1970-01-01T00:00:00Z"},
		{name: "received into Int", typ: "Int64", v: val{kind: vTime, t: received}, wantErr: "not an integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := newBuilder(tt.typ)
			if err != nil {
				t.Fatalf("newBuilder: %v", err)
			}
			err = b.add(&tt.v)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("got error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want %s", err, tt.want)
			}
			var c captureCol
			if err := b.appendTo(&c); err != nil {
				t.Fatalf("appendTo: %v", err)
			}
			if got := show(reflect.ValueOf(c.v).Index(0).Interface()); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestUnsupportedType(t *testing.T) {
	for _, typ := range []string{"Map(String, String)", "Tuple(UInt8, String)", "Array(Array(UInt8))", "IPv4", "Nullable(Enum8('a' = 1))", "Array(Nullable(Enum16('a' = 1)))", "Int128", "FixedString(x)", "Nothing"} {
		_, err := newBuilder(typ)
		if err == nil {
			t.Fatalf("newBuilder(%s): got nil error, want one", typ)
		}
		if !errors.Is(err, ErrUnsupportedType) {
			t.Fatalf("newBuilder(%s): error %v does not wrap ErrUnsupportedType", typ, err)
		}
	}
}

// TestTruncate checks that a record that fails in one column leaves no
// trace in the columns filled before it.
func TestTruncate(t *testing.T) {
	for _, typ := range []string{"String", "Nullable(String)", "Array(String)", "Array(Nullable(String))"} {
		b, err := newBuilder(typ)
		if err != nil {
			t.Fatal(err)
		}
		for _, js := range []string{`["a"]`, `["b", "c"]`, `["d"]`} {
			v := val{r: gjson.Parse(js)}
			if err := b.add(&v); err != nil {
				t.Fatal(err)
			}
		}
		b.truncate(1)
		v := val{r: gjson.Parse(`["e"]`)}
		if err := b.add(&v); err != nil {
			t.Fatal(err)
		}
		var c captureCol
		if err := b.appendTo(&c); err != nil {
			t.Fatal(err)
		}
		want := `["[\"a\"]" "[\"e\"]"]`
		if strings.HasPrefix(typ, "Array") {
			want = `[["a"] ["e"]]`
		}
		if got := show(c.v); got != want {
			t.Fatalf("%s: got %s, want %s", typ, got, want)
		}
	}
}
