package conformance

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// TestNumbers is the classic conformance trap: every SDK must read a JSON
// number to the same float64 (correctly rounded) and write a float64 as the
// same text: the shortest that reads back as it, laid out as Go's
// encoding/json does (see README.md). enrich, with no config, reads "temp"
// and writes "temp_f" = temp*9/5+32; the expected bytes are computed here
// with strconv.
func TestNumbers(t *testing.T) {
	texts := numberTexts(3000)
	lines := make([][]byte, len(texts))
	for i, s := range texts {
		lines[i] = []byte(`{"temp":` + s + `}`)
	}
	in := batch(t, lines)
	var want strings.Builder
	for i, s := range texts {
		r := in[i]
		f, err := strconv.ParseFloat(s, 64)
		if err == nil {
			f = f*9/5 + 32
			if math.IsInf(f, 0) {
				fmt.Fprintf(&want, "%d FAIL record failed: sluice: set \"temp_f\": %s has no JSON form\n", i, strconv.FormatFloat(f, 'g', -1, 64))
				continue
			}
			r.Value = append(r.Value[:len(r.Value)-1:len(r.Value)-1], `,"temp_f":`+jsonNumber(f)+"}"...)
		}
		want.WriteString(outputLine(r) + "\n")
	}
	for _, lang := range langs {
		tr, err := newTransform(t, module(lang, "enrich"), "")
		if err != nil {
			t.Fatalf("%s: New: %v", lang, err)
		}
		got := run(t, tr, in)
		tr.Close(t.Context())
		if got != want.String() {
			d := strings.Split(diff(want.String(), got), "\n")
			t.Errorf("%s: %d lines differ, e.g.:\n%s", lang, len(d)/2, strings.Join(d[:min(len(d), 10)], "\n"))
		}
	}
}

// jsonNumber writes f as encoding/json does: the shortest text that reads
// back as f, in exponent form below 1e-6 and from 1e21 up, "e-7" not "e-07".
func jsonNumber(f float64) string {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	s := strconv.FormatFloat(f, format, -1, 64)
	if format == 'e' {
		if n := len(s); n >= 4 && s[n-4] == 'e' && s[n-3] == '-' && s[n-2] == '0' {
			s = s[:n-2] + s[n-1:]
		}
	}
	return s
}

// numberTexts makes n JSON numbers that stress reading and writing them:
// random bit patterns, temperatures, long digit strings, huge and tiny
// exponents, powers of two, values near overflow and underflow.
func numberTexts(n int) []string {
	r := rand.New(rand.NewPCG(1, 2))
	out := []string{
		"0", "-0", "0.0e5", "1e400", "-1e400", "1e-400", "5e-324", "2.4703282292062327e-324",
		"2.4703282292062328e-324", "1.7976931348623157e308", "1.7976931348623158e308",
		"1.7976931348623159e308", "9.9e307", "1.9e307", "2e307", "0.000001", "1e-7", "1e21", "1e22",
		"100000000000000000000", "9007199254740993", "0.1", "0.30000000000000004",
		"123456789012345678901234567890", "-17.77777777777778", "2.5e-7", "1E+2", "1e-0",
		"0.000000000000000000000000000000000000000000000000000000000000000000000000000000001",
		"6.02214076e23", "-273.15", "98.6", "37.0", "1" + strings.Repeat("0", 400) + "e-400",
	}
	for len(out) < n {
		var s string
		switch len(out) % 5 {
		case 0:
			f := math.Float64frombits(r.Uint64())
			if math.IsNaN(f) || math.IsInf(f, 0) {
				continue
			}
			s = strconv.FormatFloat(f, 'g', -1, 64)
		case 1:
			s = strconv.FormatFloat(float64(r.IntN(200000)-100000)/100, 'f', -1, 64)
		case 2:
			b := []byte{byte('1' + r.IntN(9))}
			for range r.IntN(40) {
				b = append(b, byte('0'+r.IntN(10)))
			}
			s = string(b)
			if len(s) > 1 && r.IntN(2) == 0 {
				p := 1 + r.IntN(len(s)-1)
				s = s[:p] + "." + s[p:]
			}
			if r.IntN(2) == 0 {
				s += fmt.Sprintf("e%d", r.IntN(700)-350)
			}
		case 3:
			s = strconv.FormatFloat(math.Ldexp(1, r.IntN(2098)-1074), 'e', 16+r.IntN(3), 64)
		case 4:
			s = strconv.FormatFloat(r.NormFloat64()*math.Pow(10, float64(r.IntN(40)-20)), 'e', r.IntN(25), 64)
		}
		if s[0] != '-' && r.IntN(3) == 0 {
			s = "-" + s
		}
		out = append(out, s)
	}
	return out
}
