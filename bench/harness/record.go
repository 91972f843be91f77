package harness

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// The record every leg moves: the shape of a device reading, about 200
// bytes once the device client has stamped it with device_id and seq:
//
//	{"device_id":"bench-0001","seq":1764201234567890,"ts":"2026-11-26T22:57:06.123456789Z",
//	 "temp":21.53,"humidity":48.2,"pressure":1013.25,"kind":"reading","msg":"…"}

// Reading is the decoded form of a record (encoding/json leg, ClickHouse
// rows).
type Reading struct {
	DeviceID string  `json:"device_id"`
	Seq      uint64  `json:"seq"`
	TS       string  `json:"ts"`
	Temp     float64 `json:"temp"`
	Humidity float64 `json:"humidity"`
	Pressure float64 `json:"pressure"`
	Kind     string  `json:"kind"`
	Msg      string  `json:"msg"`
}

var messages = []string{
	"sensor warm, fan at 40%, battery 81%",
	"door closed, compressor idle, ok",
	"calibrated at boot, drift within 0.2",
	"fan on, airflow nominal, filter ok",
}

// Gen makes readings for one device.
type Gen struct {
	rng  *rand.Rand
	base float64
	k    int
}

// NewGen returns a generator seeded by n.
func NewGen(n int) *Gen {
	return &Gen{rng: rand.New(rand.NewPCG(uint64(n), 0x5eed)), base: 18 + float64(n%10)}
}

// Body appends a reading without device_id and seq (the device client adds
// them), timestamped now.
func (g *Gen) Body(b []byte, now time.Time) []byte {
	b = append(b, `{"ts":"`...)
	return g.rest(b, now)
}

// Full appends a complete record for device dev, number seq.
func (g *Gen) Full(b []byte, dev string, seq uint64, now time.Time) []byte {
	b = append(b, `{"device_id":`...)
	b = strconv.AppendQuote(b, dev)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"ts":"`...)
	return g.rest(b, now)
}

func (g *Gen) rest(b []byte, now time.Time) []byte {
	g.k++
	temp := g.base + 3*math.Sin(float64(g.k)/500) + g.rng.NormFloat64()*0.2
	b = now.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","temp":`...)
	b = strconv.AppendFloat(b, math.Round(temp*100)/100, 'f', -1, 64)
	b = append(b, `,"humidity":`...)
	b = strconv.AppendFloat(b, math.Round((40+g.rng.Float64()*20)*10)/10, 'f', -1, 64)
	b = append(b, `,"pressure":`...)
	b = strconv.AppendFloat(b, math.Round((1000+g.rng.Float64()*30)*100)/100, 'f', -1, 64)
	b = append(b, `,"kind":"reading","msg":`...)
	b = strconv.AppendQuote(b, messages[g.rng.IntN(len(messages))])
	return append(b, '}')
}

// DeviceID names bench device i.
func DeviceID(prefix string, i int) string {
	return prefix + strconv.Itoa(10000 + i)[1:]
}

// Corpus returns n complete records from devices devices, seqs counting
// from a microsecond timestamp as the device client's do.
func Corpus(n, devices int) [][]byte {
	gens := make([]*Gen, devices)
	for i := range gens {
		gens[i] = NewGen(i)
	}
	first := uint64(time.Now().UnixMicro())
	out := make([][]byte, n)
	now := time.Now()
	for i := range out {
		d := i % devices
		out[i] = gens[d].Full(make([]byte, 0, 224), DeviceID("raw-", d), first+uint64(i/devices), now.Add(time.Duration(i)*time.Microsecond))
	}
	return out
}

// Decode parses records into Readings.
func Decode(recs [][]byte) ([]Reading, error) {
	out := make([]Reading, len(recs))
	for i, r := range recs {
		if err := json.Unmarshal(r, &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// AvgSize is the mean length of recs.
func AvgSize(recs [][]byte) float64 {
	if len(recs) == 0 {
		return 0
	}
	n := 0
	for _, r := range recs {
		n += len(r)
	}
	return float64(n) / float64(len(recs))
}
