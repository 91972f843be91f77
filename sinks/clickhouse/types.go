package clickhouse

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
	"github.com/shopspring/decimal"
	"github.com/tidwall/gjson"
)

// ErrConvert is wrapped by every per-record conversion error: a value that
// does not fit its column's type.
var ErrConvert = errors.New("value does not fit the column type")

// ErrUnsupportedType is wrapped by the error New returns for a column whose
// type the sink cannot fill.
var ErrUnsupportedType = errors.New("unsupported column type")

// reason is why one value does not fit; it wraps ErrConvert.
type reason string

func (r reason) Error() string { return string(r) }
func (r reason) Unwrap() error { return ErrConvert }

func reasonf(format string, args ...any) error { return reason(fmt.Sprintf(format, args...)) }

// valKind says which field of a val holds the value.
type valKind uint8

const (
	vJSON valKind = iota // r: a JSON value, or missing (r.Type == Null)
	vStr                 // s: @device, @key, @dest
	vUint                // u: @seq, @part
	vTime                // t: @received
)

// val is the source value of one column in one record.
type val struct {
	kind valKind
	r    gjson.Result
	s    string
	u    uint64
	t    time.Time
}

// missing reports a value that gets the column's default: an absent field,
// JSON null, or empty metadata (no device, key, dest or receive time).
func (v *val) missing() bool {
	switch v.kind {
	case vJSON:
		return v.r.Type == gjson.Null
	case vStr:
		return v.s == ""
	case vTime:
		return v.t.IsZero()
	}
	return false
}

// String shows the value in error messages: JSON as written, metadata as
// JSON would write it, cut to 80 bytes.
func (v *val) String() string {
	var s string
	switch v.kind {
	case vJSON:
		s = v.r.Raw
		if s == "" && v.r.Type == gjson.String {
			s = strconv.Quote(v.r.Str)
		}
	case vStr:
		s = strconv.Quote(v.s)
	case vUint:
		s = strconv.FormatUint(v.u, 10)
	case vTime:
		s = strconv.Quote(v.t.UTC().Format(time.RFC3339Nano))
	}
	const max = 80
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// builder accumulates one column's values for one INSERT.
type builder interface {
	// add converts v and appends it, or returns why it does not fit (and
	// appends nothing).
	add(v *val) error
	// truncate keeps the first n rows.
	truncate(n int)
	// appendTo hands the rows to the batch column.
	appendTo(c driver.BatchColumn) error
}

// kind is a scalar ClickHouse type: it makes the builders for T, Nullable(T)
// and Array(T).
type kind interface {
	plain() builder
	nullable() builder
	array(nullElems bool) builder
}

// scalar is a kind whose values are Go values of type T, the type the
// clickhouse-go column takes in a slice.
type scalar[T any] struct {
	zero T
	conv func(v *val) (T, error)
}

func (s scalar[T]) plain() builder    { return &plainBuilder[T]{s: s} }
func (s scalar[T]) nullable() builder { return &nullBuilder[T]{s: s} }
func (s scalar[T]) array(nullElems bool) builder {
	return &listBuilder[T]{s: s, nullElems: nullElems}
}

type plainBuilder[T any] struct {
	s    scalar[T]
	vals []T
}

func (b *plainBuilder[T]) add(v *val) error {
	if v.missing() {
		b.vals = append(b.vals, b.s.zero)
		return nil
	}
	x, err := b.s.conv(v)
	if err != nil {
		return err
	}
	b.vals = append(b.vals, x)
	return nil
}

func (b *plainBuilder[T]) truncate(n int) {
	clear(b.vals[n:])
	b.vals = b.vals[:n]
}

func (b *plainBuilder[T]) appendTo(c driver.BatchColumn) error { return c.Append(b.vals) }

type nullBuilder[T any] struct {
	s      scalar[T]
	vals   []T
	isNull []bool
	ptrs   []*T
}

func (b *nullBuilder[T]) add(v *val) error {
	if v.missing() {
		b.vals = append(b.vals, b.s.zero)
		b.isNull = append(b.isNull, true)
		return nil
	}
	x, err := b.s.conv(v)
	if err != nil {
		return err
	}
	b.vals = append(b.vals, x)
	b.isNull = append(b.isNull, false)
	return nil
}

func (b *nullBuilder[T]) truncate(n int) {
	clear(b.vals[n:])
	b.vals, b.isNull = b.vals[:n], b.isNull[:n]
	clear(b.ptrs)
	b.ptrs = b.ptrs[:0]
}

func (b *nullBuilder[T]) appendTo(c driver.BatchColumn) error {
	b.ptrs = b.ptrs[:0]
	for i := range b.vals {
		if b.isNull[i] {
			b.ptrs = append(b.ptrs, nil)
		} else {
			b.ptrs = append(b.ptrs, &b.vals[i])
		}
	}
	return c.Append(b.ptrs)
}

// listBuilder builds Array(T) and Array(Nullable(T)) in one flat slice of
// elements plus the end offset of each row, so that a row costs no
// allocation; the [][]T for the column is cut from it at appendTo.
type listBuilder[T any] struct {
	s         scalar[T]
	nullElems bool
	flat      []T
	isNull    []bool
	ends      []int
	rows      [][]T
	nrows     [][]*T
	ptrs      []*T
	elem      val
	err       error
	visit     func(_, e gjson.Result) bool
}

func (b *listBuilder[T]) add(v *val) error {
	if v.missing() {
		b.ends = append(b.ends, len(b.flat))
		return nil
	}
	if v.kind != vJSON || !v.r.IsArray() {
		return reason("not an array")
	}
	if b.visit == nil {
		b.visit = b.addElem
	}
	start := len(b.flat)
	b.err = nil
	v.r.ForEach(b.visit)
	if b.err != nil {
		clear(b.flat[start:])
		b.flat, b.isNull = b.flat[:start], b.isNull[:start]
		return b.err
	}
	b.ends = append(b.ends, len(b.flat))
	return nil
}

// addElem appends one element; it is the ForEach callback of add.
func (b *listBuilder[T]) addElem(_, e gjson.Result) bool {
	b.elem = val{r: e}
	x, null := b.s.zero, true
	if !b.elem.missing() {
		var err error
		if x, err = b.s.conv(&b.elem); err != nil {
			b.err = fmt.Errorf("element %d: %w", len(b.flat)-b.rowStart(), err)
			return false
		}
		null = false
	}
	b.flat = append(b.flat, x)
	b.isNull = append(b.isNull, null && b.nullElems)
	return true
}

func (b *listBuilder[T]) rowStart() int {
	if len(b.ends) == 0 {
		return 0
	}
	return b.ends[len(b.ends)-1]
}

func (b *listBuilder[T]) truncate(n int) {
	end := 0
	if n > 0 {
		end = b.ends[n-1]
	}
	clear(b.flat[end:])
	b.flat, b.isNull, b.ends = b.flat[:end], b.isNull[:end], b.ends[:n]
	clear(b.rows)
	clear(b.nrows)
	clear(b.ptrs)
	b.rows, b.nrows, b.ptrs = b.rows[:0], b.nrows[:0], b.ptrs[:0]
}

func (b *listBuilder[T]) appendTo(c driver.BatchColumn) error {
	start := 0
	if !b.nullElems {
		b.rows = b.rows[:0]
		for _, end := range b.ends {
			b.rows = append(b.rows, b.flat[start:end:end])
			start = end
		}
		return c.Append(b.rows)
	}
	b.ptrs = b.ptrs[:0]
	for i := range b.flat {
		if b.isNull[i] {
			b.ptrs = append(b.ptrs, nil)
		} else {
			b.ptrs = append(b.ptrs, &b.flat[i])
		}
	}
	b.nrows = b.nrows[:0]
	for _, end := range b.ends {
		b.nrows = append(b.nrows, b.ptrs[start:end:end])
		start = end
	}
	return c.Append(b.nrows)
}

// newBuilder returns the builder for a column of ClickHouse type typ, as
// DESCRIBE TABLE writes it.
func newBuilder(typ string) (builder, error) {
	t := strings.TrimSpace(typ)
	if inner, ok := unwrap(t, "LowCardinality"); ok {
		return newBuilder(inner) // same Go values as the inner type
	}
	if inner, ok := unwrap(t, "Nullable"); ok {
		k, err := newNullableKind(inner)
		if err != nil {
			return nil, err
		}
		return k.nullable(), nil
	}
	if inner, ok := unwrap(t, "Array"); ok {
		if in, ok := unwrap(inner, "LowCardinality"); ok {
			inner = in
		}
		nullElems := false
		newK := newKind
		if in, ok := unwrap(inner, "Nullable"); ok {
			inner, nullElems, newK = in, true, newNullableKind
		}
		k, err := newK(inner)
		if err != nil {
			return nil, err
		}
		return k.array(nullElems), nil
	}
	k, err := newKind(t)
	if err != nil {
		return nil, err
	}
	return k.plain(), nil
}

// newNullableKind is newKind for the T of Nullable(T). clickhouse-go
// writes 0 under a NULL Enum, which breaks reading the column (toString:
// "Unexpected value 0") when 0 is not one of the Enum's values.
func newNullableKind(t string) (kind, error) {
	if family, args := split(t); family == "Enum8" || family == "Enum16" {
		if _, nums, ok := parseEnum(args); ok && !slices.Contains(nums, 0) {
			return nil, fmt.Errorf("%w Nullable(%s): the Enum needs a value 0 to hold NULLs (clickhouse-go writes 0 under a NULL); add one, e.g. 'unknown' = 0", ErrUnsupportedType, t)
		}
	}
	return newKind(t)
}

// unwrap returns the argument of name(...) when t is that.
func unwrap(t, name string) (string, bool) {
	if len(t) > len(name)+1 && strings.HasPrefix(t, name) && t[len(name)] == '(' && t[len(t)-1] == ')' {
		return strings.TrimSpace(t[len(name)+1 : len(t)-1]), true
	}
	return "", false
}

// split returns the family and the arguments of "Family(args)".
func split(t string) (family, args string) {
	i := strings.IndexByte(t, '(')
	if i < 0 || t[len(t)-1] != ')' {
		return t, ""
	}
	return t[:i], strings.TrimSpace(t[i+1 : len(t)-1])
}

var (
	epoch     = time.Unix(0, 0).UTC()
	maxDate   = time.Date(2149, 6, 6, 0, 0, 0, 0, time.UTC)
	minDate32 = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
	maxDate32 = time.Date(2299, 12, 31, 0, 0, 0, 0, time.UTC)
	maxDT     = time.Unix(math.MaxUint32, 0).UTC()
	minDT64   = minDate32
	maxDT64   = time.Date(2299, 12, 31, 23, 59, 59, 999999999, time.UTC)
)

// newKind returns the kind of a scalar ClickHouse type.
func newKind(t string) (kind, error) {
	family, args := split(t)
	switch family {
	case "String":
		return scalar[string]{conv: toString}, nil
	case "FixedString":
		n, err := strconv.Atoi(args)
		if err != nil || n <= 0 {
			break
		}
		return scalar[string]{conv: func(v *val) (string, error) {
			s, err := toString(v)
			if err == nil && len(s) > n {
				err = reasonf("%d bytes, longer than FixedString(%d)", len(s), n)
			}
			return s, err
		}}, nil
	case "Int8":
		return intKind[int8](family, math.MinInt8, math.MaxInt8), nil
	case "Int16":
		return intKind[int16](family, math.MinInt16, math.MaxInt16), nil
	case "Int32":
		return intKind[int32](family, math.MinInt32, math.MaxInt32), nil
	case "Int64":
		return intKind[int64](family, math.MinInt64, math.MaxInt64), nil
	case "UInt8":
		return uintKind[uint8](family, math.MaxUint8), nil
	case "UInt16":
		return uintKind[uint16](family, math.MaxUint16), nil
	case "UInt32":
		return uintKind[uint32](family, math.MaxUint32), nil
	case "UInt64":
		return uintKind[uint64](family, math.MaxUint64), nil
	case "Float32":
		return scalar[float32]{conv: func(v *val) (float32, error) {
			f, err := toFloat(v)
			if err == nil && !math.IsInf(f, 0) && math.Abs(f) > math.MaxFloat32 {
				err = reason("out of range for Float32")
			}
			return float32(f), err
		}}, nil
	case "Float64":
		return scalar[float64]{conv: toFloat}, nil
	case "Bool", "Boolean":
		return scalar[bool]{conv: toBool}, nil
	case "Date":
		return dateKind(family, epoch, maxDate), nil
	case "Date32":
		return dateKind(family, minDate32, maxDate32), nil
	case "DateTime":
		return scalar[time.Time]{zero: epoch, conv: func(v *val) (time.Time, error) {
			t, err := toTime(v)
			if err == nil && (t.Before(epoch) || t.After(maxDT)) {
				err = reasonf("out of range for DateTime (%s to %s)", epoch.Format(time.RFC3339), maxDT.Format(time.RFC3339))
			}
			return t, err
		}}, nil
	case "DateTime64":
		p, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(args, ",", 2)[0]))
		if err != nil || p < 0 || p > 9 {
			break
		}
		lo, hi := minDT64, maxDT64
		if p == 9 { // int64 nanoseconds
			lo, hi = time.Unix(0, math.MinInt64).UTC(), time.Unix(0, math.MaxInt64).UTC()
		}
		return scalar[time.Time]{zero: epoch, conv: func(v *val) (time.Time, error) {
			t, err := toTime(v)
			if err == nil && (t.Before(lo) || t.After(hi)) {
				err = reasonf("out of range for DateTime64(%d) (%s to %s)", p, lo.Format(time.RFC3339), hi.Format(time.RFC3339))
			}
			return t, err
		}}, nil
	case "UUID":
		return scalar[uuid.UUID]{conv: toUUID}, nil
	case "Decimal", "Decimal32", "Decimal64", "Decimal128", "Decimal256":
		if k, ok := decimalKind(family, args); ok {
			return k, nil
		}
	case "Enum8", "Enum16":
		if k, ok := enumKind(family, args); ok {
			return k, nil
		}
	}
	return nil, fmt.Errorf("%w %s (supported: String, FixedString(N), Int8-64, UInt8-64, Float32/64, Bool, Date, Date32, DateTime, DateTime64, UUID, Decimal, Enum8/16, and Nullable, LowCardinality and Array of them)", ErrUnsupportedType, t)
}

type signed interface {
	~int8 | ~int16 | ~int32 | ~int64
}
type unsigned interface {
	~uint8 | ~uint16 | ~uint32 | ~uint64
}

func intKind[T signed](name string, lo, hi int64) kind {
	return scalar[T]{conv: func(v *val) (T, error) {
		n, err := toInt(v, name, lo, hi)
		return T(n), err
	}}
}

func uintKind[T unsigned](name string, hi uint64) kind {
	return scalar[T]{conv: func(v *val) (T, error) {
		n, err := toUint(v, name, hi)
		return T(n), err
	}}
}

func dateKind(name string, lo, hi time.Time) kind {
	return scalar[time.Time]{zero: epoch, conv: func(v *val) (time.Time, error) {
		t, err := toTime(v)
		if err != nil {
			return t, err
		}
		y, m, d := t.UTC().Date()
		t = time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
		if t.Before(lo) || t.After(hi) {
			return t, reasonf("out of range for %s (%s to %s)", name, lo.Format(time.DateOnly), hi.Format(time.DateOnly))
		}
		return t, nil
	}}
}

// toString: a JSON string is its content; any other JSON value its JSON
// text; metadata as text.
func toString(v *val) (string, error) {
	switch v.kind {
	case vStr:
		return v.s, nil
	case vUint:
		return strconv.FormatUint(v.u, 10), nil
	case vTime:
		return v.t.UTC().Format(time.RFC3339Nano), nil
	}
	if v.r.Type == gjson.String {
		return v.r.Str, nil
	}
	return v.r.Raw, nil
}

// numText returns the text of a number: a JSON number, or a JSON string
// holding one (64-bit integers often travel as strings).
func numText(v *val) (string, bool) {
	switch {
	case v.kind == vStr:
		return v.s, true
	case v.kind != vJSON:
		return "", false
	case v.r.Type == gjson.Number:
		return v.r.Raw, true
	case v.r.Type == gjson.String:
		return v.r.Str, true
	}
	return "", false
}

func toInt(v *val, name string, lo, hi int64) (int64, error) {
	if v.kind == vUint {
		if v.u > uint64(hi) {
			return 0, reasonf("out of range for %s", name)
		}
		return int64(v.u), nil
	}
	if v.kind == vJSON && (v.r.Type == gjson.True || v.r.Type == gjson.False) {
		if v.r.Type == gjson.True {
			return 1, nil
		}
		return 0, nil
	}
	s, ok := numText(v)
	if !ok {
		return 0, reason("not an integer")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, reasonf("out of range for %s", name)
		}
		f, ferr := strconv.ParseFloat(s, 64)
		switch {
		case ferr != nil && !errors.Is(ferr, strconv.ErrRange), math.IsNaN(f), f != math.Trunc(f):
			return 0, reason("not an integer")
		case f < -(1<<63) || f >= 1<<63:
			return 0, reasonf("out of range for %s", name)
		}
		n = int64(f)
	}
	if n < lo || n > hi {
		return 0, reasonf("out of range for %s", name)
	}
	return n, nil
}

func toUint(v *val, name string, hi uint64) (uint64, error) {
	if v.kind == vUint {
		if v.u > hi {
			return 0, reasonf("out of range for %s", name)
		}
		return v.u, nil
	}
	if v.kind == vJSON && (v.r.Type == gjson.True || v.r.Type == gjson.False) {
		if v.r.Type == gjson.True {
			return 1, nil
		}
		return 0, nil
	}
	s, ok := numText(v)
	if !ok {
		return 0, reason("not an integer")
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, reasonf("out of range for %s", name)
		}
		f, ferr := strconv.ParseFloat(s, 64)
		switch {
		case ferr != nil && !errors.Is(ferr, strconv.ErrRange), math.IsNaN(f), f != math.Trunc(f):
			return 0, reason("not an integer")
		case f == 0: // "-0", "0.0"
			return 0, nil
		case f < 0 || f >= 1<<64:
			return 0, reasonf("out of range for %s", name)
		}
		n = uint64(f)
	}
	if n > hi {
		return 0, reasonf("out of range for %s", name)
	}
	return n, nil
}

func toFloat(v *val) (float64, error) {
	switch {
	case v.kind == vUint:
		return float64(v.u), nil
	case v.kind == vJSON && v.r.Type == gjson.Number:
		return v.r.Num, nil
	}
	if s, ok := numText(v); ok {
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return f, nil
		}
	}
	return 0, reason("not a number")
}

func toBool(v *val) (bool, error) {
	if v.kind == vJSON {
		switch v.r.Type {
		case gjson.True:
			return true, nil
		case gjson.False:
			return false, nil
		case gjson.Number:
			switch v.r.Raw {
			case "0":
				return false, nil
			case "1":
				return true, nil
			}
		}
	}
	return false, reason("not a boolean (true, false, 0 or 1)")
}

func toUUID(v *val) (uuid.UUID, error) {
	s, err := toString(v)
	if err == nil && (v.kind == vStr || v.r.Type == gjson.String) {
		if u, err := uuid.Parse(s); err == nil {
			return u, nil
		}
	}
	return uuid.UUID{}, reason("not a UUID")
}

var errNotTime = reason("not a time (an RFC 3339 string or a unix timestamp)")

// toTime reads a time: an RFC 3339 string ("2024-05-01T12:00:00.5Z"), the
// same with a space for the T, without a zone (UTC) or just a date; or a
// unix timestamp, a number or a string holding one, whose unit follows from
// its magnitude (see unixTime).
func toTime(v *val) (time.Time, error) {
	switch v.kind {
	case vTime:
		return v.t, nil
	case vUint:
		return time.Time{}, errNotTime
	case vJSON:
		switch v.r.Type {
		case gjson.Number:
			return unixTime(v.r.Raw)
		case gjson.String:
		default:
			return time.Time{}, errNotTime
		}
	}
	s, _ := toString(v)
	if s == "" {
		return time.Time{}, errNotTime
	}
	if c := s[0]; c == '-' || c == '.' || (c >= '0' && c <= '9' && (len(s) < 5 || s[4] != '-')) {
		return unixTime(s)
	}
	return parseTime(s)
}

func parseTime(s string) (time.Time, error) {
	layout := time.DateOnly
	if len(s) != len(time.DateOnly) {
		if len(s) < 19 || (s[10] != 'T' && s[10] != ' ' && s[10] != 't') {
			return time.Time{}, errNotTime
		}
		if c := s[len(s)-1]; c == 'Z' || c == 'z' || strings.LastIndexAny(s, "+-") > 18 {
			layout = "2006-01-02T15:04:05Z07:00"
		} else {
			layout = "2006-01-02T15:04:05" // no zone: UTC
		}
		if s[10] != 'T' || s[len(s)-1] == 'z' {
			b := []byte(s)
			b[10] = 'T'
			if b[len(b)-1] == 'z' {
				b[len(b)-1] = 'Z'
			}
			s = string(b)
		}
	}
	t, err := time.Parse(layout, s)
	if err != nil {
		return time.Time{}, errNotTime
	}
	return t, nil
}

// unixTime reads a unix timestamp whose unit follows from its magnitude:
// below 1e10 seconds, below 1e13 milliseconds, below 1e16 microseconds,
// otherwise nanoseconds. Every instant from 1970-04-26 to 2286-11-20 thus
// reads right in any of the four units. Fractions are kept.
func unixTime(s string) (time.Time, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		a := n
		if a < 0 {
			a = -a
		}
		switch {
		case a < 1e10:
			return time.Unix(n, 0).UTC(), nil
		case a < 1e13:
			return time.UnixMilli(n).UTC(), nil
		case a < 1e16:
			return time.UnixMicro(n).UTC(), nil
		}
		return time.Unix(0, n).UTC(), nil
	} else if errors.Is(err, strconv.ErrRange) {
		return time.Time{}, reason("out of range for a unix timestamp")
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return time.Time{}, errNotTime
	}
	var perSec float64
	switch a := math.Abs(f); {
	case a < 1e10:
		perSec = 1
	case a < 1e13:
		perSec = 1e3
	case a < 1e16:
		perSec = 1e6
	default:
		perSec = 1e9
	}
	sec, frac := math.Modf(f / perSec)
	if math.Abs(sec) > 1e11 {
		return time.Time{}, reason("out of range for a unix timestamp")
	}
	return time.Unix(int64(sec), int64(math.Round(frac*1e9))).UTC(), nil
}

// decimalKind makes Decimal(P, S), Decimal32(S), Decimal64(S),
// Decimal128(S) and Decimal256(S). Values are rounded to S digits (half away
// from zero); a value with more than P-S integer digits does not fit.
func decimalKind(family, args string) (kind, bool) {
	var p, s int
	var err error
	parts := strings.Split(args, ",")
	if family == "Decimal" {
		if len(parts) != 2 {
			return nil, false
		}
		p, err = strconv.Atoi(strings.TrimSpace(parts[0]))
		if err != nil {
			return nil, false
		}
		parts = parts[1:]
	} else {
		p = map[string]int{"Decimal32": 9, "Decimal64": 18, "Decimal128": 38, "Decimal256": 76}[family]
		if len(parts) != 1 {
			return nil, false
		}
	}
	if s, err = strconv.Atoi(strings.TrimSpace(parts[0])); err != nil || p < 1 || p > 76 || s < 0 || s > p {
		return nil, false
	}
	name := fmt.Sprintf("Decimal(%d, %d)", p, s)
	limit := decimal.NewFromBigInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(p-s)), nil), 0)
	return scalar[decimal.Decimal]{zero: decimal.Zero, conv: func(v *val) (decimal.Decimal, error) {
		var d decimal.Decimal
		if v.kind == vUint {
			d = decimal.NewFromUint64(v.u)
		} else if txt, ok := numText(v); !ok {
			return d, reason("not a decimal number")
		} else if d, err = decimal.NewFromString(txt); err != nil {
			return d, reason("not a decimal number")
		}
		d = d.Round(int32(s))
		if d.Abs().Cmp(limit) >= 0 {
			return d, reasonf("out of range for %s", name)
		}
		return d, nil
	}}, true
}

// enumKind makes Enum8 and Enum16 from their definition, e.g.
// "'a' = 1, 'b' = 2". A value is a name (JSON string) or a number (JSON
// number); the column takes names. The default is the name of the smallest
// number, as in ClickHouse.
func enumKind(family, args string) (kind, bool) {
	names, nums, ok := parseEnum(args)
	if !ok || len(names) == 0 {
		return nil, false
	}
	byName := make(map[string]bool, len(names))
	byNum := make(map[int64]string, len(names))
	zero, min := "", int64(math.MaxInt64)
	for i, n := range names {
		byName[n] = true
		byNum[nums[i]] = n
		if nums[i] < min {
			zero, min = n, nums[i]
		}
	}
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	list := "'" + strings.Join(sorted, "', '") + "'"
	if len(list) > 100 {
		list = list[:100] + "…"
	}
	return scalar[string]{zero: zero, conv: func(v *val) (string, error) {
		if v.kind == vJSON && v.r.Type == gjson.Number || v.kind == vUint {
			n, err := toInt(v, family, math.MinInt64, math.MaxInt64)
			if name, ok := byNum[n]; ok && err == nil {
				return name, nil
			}
			return "", reasonf("not a value of %s (%s)", family, list)
		}
		s, _ := toString(v)
		if (v.kind == vStr || v.r.Type == gjson.String) && byName[s] {
			return s, nil
		}
		return "", reasonf("not a name of %s (%s)", family, list)
	}}, true
}

// parseEnum parses "'a' = 1, 'b\'c' = -2".
func parseEnum(s string) (names []string, nums []int64, ok bool) {
	for {
		s = strings.TrimSpace(s)
		if len(s) == 0 || s[0] != '\'' {
			return nil, nil, false
		}
		var name strings.Builder
		i := 1
		for ; i < len(s) && s[i] != '\''; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
			}
			name.WriteByte(s[i])
		}
		if i >= len(s) {
			return nil, nil, false
		}
		s = strings.TrimSpace(s[i+1:])
		if len(s) == 0 || s[0] != '=' {
			return nil, nil, false
		}
		s = strings.TrimSpace(s[1:])
		end := strings.IndexByte(s, ',')
		if end < 0 {
			end = len(s)
		}
		n, err := strconv.ParseInt(strings.TrimSpace(s[:end]), 10, 64)
		if err != nil {
			return nil, nil, false
		}
		names, nums = append(names, name.String()), append(nums, n)
		if end == len(s) {
			return names, nums, true
		}
		s = s[end+1:]
	}
}
