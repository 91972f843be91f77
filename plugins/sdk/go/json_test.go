package sluice

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

func TestSkipValue(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want int // end of the first value, or -1
	}{
		{"string", `"abc" x`, 5},
		{"escaped quote", `"a\"b"`, 6},
		{"escaped backslash", `"a\\"`, 5},
		{"long string", `"abcdefghijklmnopqrstuvwxyz0123456789"`, 38},
		{"quote at a word boundary", `"1234567"x`, 9},
		{"unterminated", `"abc`, -1},
		{"number", `-12.5e+3,`, 8},
		{"true", `true}`, 4},
		{"false", `false`, 5},
		{"null", `null`, 4},
		{"bad literal", `nul`, -1},
		{"object", `{"a":[1,{"b":"}"}]} `, 19},
		{"array", `[1,"]",[2]]`, 11},
		{"unbalanced", `[1,2`, -1},
		{"garbage", `x`, -1},
		{"empty", ``, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := skipValue([]byte(tt.in), 0); got != tt.want {
				t.Fatalf("skipValue(%q): got %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestSkipStringEveryPosition(t *testing.T) {
	// A quote or backslash at each offset, so that every lane of the
	// 8-byte scan is exercised.
	for n := 0; n < 40; n++ {
		s := `"` + string(bytes.Repeat([]byte("x"), n)) + `"tail`
		if end, esc := skipString([]byte(s), 0); end != n+2 || esc {
			t.Fatalf("skipString(%q): got %d %v, want %d false", s, end, esc, n+2)
		}
		s = `"` + string(bytes.Repeat([]byte("x"), n)) + `\"y"`
		if end, esc := skipString([]byte(s), 0); end != n+5 || !esc {
			t.Fatalf("skipString(%q): got %d %v, want %d true", s, end, esc, n+5)
		}
	}
}

func TestParseFloat(t *testing.T) {
	for _, s := range []string{"0", "-0", "1", "21.5", "-3.25", "0.1", "123456789012345", "1234567890123456",
		"9007199254740993", "1e3", "1.5E-3", "0.000001", "3.14159265358979", "100.0", "-0.0"} {
		want, _ := strconv.ParseFloat(s, 64)
		got, ok := ParseFloat([]byte(s))
		if !ok || math.Float64bits(got) != math.Float64bits(want) {
			t.Errorf("ParseFloat(%q): got %v %v, want %v", s, got, ok, want)
		}
	}
	for _, s := range []string{"", "-", "abc", `"1"`, "true", "1..2", "1-2"} {
		if f, ok := ParseFloat([]byte(s)); ok {
			t.Errorf("ParseFloat(%q): got %v, want not ok", s, f)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		s := strconv.FormatFloat(r.NormFloat64()*math.Pow(10, float64(r.IntN(12))), 'f', r.IntN(8), 64)
		want, _ := strconv.ParseFloat(s, 64)
		got, ok := ParseFloat([]byte(s))
		if !ok || got != want {
			t.Fatalf("ParseFloat(%q): got %v %v, want %v", s, got, ok, want)
		}
	}
}

func TestParseInt(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"-42", -42, true}, {"123456789012345678", 123456789012345678, true},
		{"1e3", 1000, true}, {"2.0", 2, true}, {"2.5", 0, false}, {`"1"`, 0, false}, {"1e30", 0, false},
	}
	for _, tt := range tests {
		if got, ok := ParseInt([]byte(tt.in)); got != tt.want || ok != tt.ok {
			t.Errorf("ParseInt(%q): got %d %v, want %d %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// AppendFloat writes what encoding/json writes, fast path or not.
func TestAppendFloatMatchesEncodingJSON(t *testing.T) {
	check := func(f float64) {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return
		}
		want, _ := json.Marshal(f)
		got, ok := AppendFloat(nil, f)
		if !ok || string(got) != string(want) {
			t.Fatalf("AppendFloat(%v): got %s, want %s", f, got, want)
		}
	}
	for _, f := range []float64{0, math.Copysign(0, -1), 1, -1, 0.5, 70.7, 21.5*9/5 + 32, 0.05, 0.0001, 0.00001,
		1e-7, 123456789.1234, 999999999.9999, 1e9, 1e20, 1e21, 1.5e300, -2.5e-300, math.MaxFloat64, math.SmallestNonzeroFloat64} {
		check(f)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 200000 {
		switch r.IntN(3) {
		case 0:
			check(math.Round(r.NormFloat64()*1e6) / math.Pow(10, float64(r.IntN(6))))
		case 1:
			check(r.NormFloat64() * math.Pow(10, float64(r.IntN(30)-15)))
		default:
			check(math.Float64frombits(r.Uint64()) / 1e300)
		}
	}
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if _, ok := AppendFloat(nil, f); ok {
			t.Errorf("AppendFloat(%v): got ok, want not ok", f)
		}
	}
}

func TestQuoteRoundTrip(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote`, `back\slash`, "tab\tnew\nline\r", "\x00\x01\x1f", "héllo ✓ 🚀",
		"bad \xff utf8", "</script>&"} {
		q := AppendQuote(nil, s)
		var want string
		if err := json.Unmarshal(q, &want); err != nil {
			t.Fatalf("AppendQuote(%q) = %s, not JSON: %v", s, q, err)
		}
		got, ok := AppendUnquote(nil, q)
		if !ok || string(got) != want {
			t.Fatalf("AppendUnquote(%s): got %q %v, want %q", q, got, ok, want)
		}
	}
	// Escapes encoding/json writes, and surrogate pairs.
	for in, want := range map[string]string{`"\u00e9\ud83d\ude80\/\b\f"`: "é🚀/\b\f", `"\ud800"`: "\uFFFD"} {
		got, ok := AppendUnquote(nil, []byte(in))
		if !ok || string(got) != want {
			t.Errorf("AppendUnquote(%s): got %q %v, want %q", in, got, ok, want)
		}
	}
	for _, bad := range []string{`"\x"`, `"\u12"`, `abc`, `"`} {
		if _, ok := AppendUnquote(nil, []byte(bad)); ok {
			t.Errorf("AppendUnquote(%s): got ok, want not ok", bad)
		}
	}
}

func TestElements(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{`[]`, nil},
		{` [ 1 , "a,b" , {"x":[1]} , null ] `, []string{`1`, `"a,b"`, `{"x":[1]}`, `null`}},
		{`{"a":1}`, nil},
		{`[1,`, []string{"1"}},
	}
	for _, tt := range tests {
		var got []string
		for e := range Elements([]byte(tt.in)) {
			got = append(got, string(e))
		}
		if len(got) != len(tt.want) {
			t.Fatalf("Elements(%s): got %q, want %q", tt.in, got, tt.want)
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Fatalf("Elements(%s): got %q, want %q", tt.in, got, tt.want)
			}
		}
	}
}

func TestMoveOverlap(t *testing.T) {
	for n := 0; n < 40; n++ {
		for shift := -20; shift <= 20; shift++ {
			buf := make([]byte, 100)
			ref := make([]byte, 100)
			for i := range buf {
				buf[i] = byte(i)
				ref[i] = byte(i)
			}
			src, dst := 40, 40+shift
			move(buf[dst:], buf[src:src+n])
			copy(ref[dst:], ref[src:src+n])
			if !bytes.Equal(buf, ref) {
				t.Fatalf("move n=%d shift=%d: got %v, want %v", n, shift, buf, ref)
			}
		}
	}
}
