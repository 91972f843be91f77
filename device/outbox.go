package device

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// The outbox file is an append-only log of lines, each ending in a space,
// eight hex digits of CRC-32C over everything before that space, and '\n':
//
//	r <seq> <record JSON> <crc>   a record queued with its seq
//	a <seq> <crc>                 every record up to seq is settled
//
// Loading stops at the first line that is incomplete or fails its check
// (a write torn by a crash or power loss) and cuts the file there. Records
// are only ever put on the wire after the fsync that covers them, so a torn
// record was never sent and its seq is free to use again.
const outboxName = "outbox.log"

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// outbox is the file behind Options.OutboxDir. Appends run under the
// client's mutex; sync runs beside them. fmu is held for reading by both
// and for writing while compaction swaps the file.
type outbox struct {
	dir  string
	path string

	fmu    sync.RWMutex
	f      *os.File
	size   int64 // bytes in the file
	live   int64 // bytes of record lines not yet settled
	broken error
	buf    []byte
}

// loaded is what openOutbox found in an existing file.
type loaded struct {
	records []*entry // unsettled, in seq order
	settled uint64   // highest seq known settled
	maxSeq  uint64   // highest seq in the file (records or settled marks)
	empty   bool     // the file held nothing
}

func openOutbox(dir string) (*outbox, loaded, error) {
	var l loaded
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, l, fmt.Errorf("device: outbox dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, outboxName)
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, l, fmt.Errorf("device: read outbox %s: %w", path, err)
	}
	good, err := parseOutbox(data, &l)
	f, ferr := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if ferr != nil {
		return nil, l, fmt.Errorf("device: open outbox %s: %w", path, ferr)
	}
	if err != nil {
		// Cut the torn tail so that new lines follow good ones.
		if terr := f.Truncate(int64(good)); terr != nil {
			f.Close()
			return nil, l, fmt.Errorf("device: repair outbox %s: %w", path, terr)
		}
	}
	if _, err := f.Seek(int64(good), io.SeekStart); err != nil {
		f.Close()
		return nil, l, fmt.Errorf("device: open outbox %s: %w", path, err)
	}
	// Whatever a crashed process left in the page cache is made durable
	// now, before any of it is sent.
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, l, fmt.Errorf("device: fsync outbox %s: %w", path, err)
	}
	o := &outbox{dir: dir, path: path, f: f, size: int64(good)}
	for _, e := range l.records {
		o.live += int64(len(e.line)) + lineOverhead(e.seq)
	}
	l.empty = good == 0
	return o, l, errTorn(err)
}

type tornError struct{ offset int }

func (e *tornError) Error() string {
	return fmt.Sprintf("outbox file torn at byte %d (a crash cut a write short); dropped the rest", e.offset)
}

func errTorn(err error) error {
	var te *tornError
	if errors.As(err, &te) {
		return te
	}
	return err
}

// parseOutbox reads the lines of data into l and returns how many bytes
// were good, with a *tornError if the rest was not.
func parseOutbox(data []byte, l *loaded) (int, error) {
	var recs []*entry
	off := 0
	for off < len(data) {
		nl := bytes.IndexByte(data[off:], '\n')
		if nl < 0 {
			break
		}
		line := data[off : off+nl]
		kind, seq, payload, ok := parseLine(line)
		if !ok {
			break
		}
		switch kind {
		case 'r':
			recs = append(recs, &entry{seq: seq, line: bytes.Clone(payload), sends: 1})
		case 'a':
			if seq > l.settled {
				l.settled = seq
			}
		}
		l.maxSeq = max(l.maxSeq, seq)
		off += nl + 1
	}
	for _, e := range recs {
		if e.seq > l.settled {
			l.records = append(l.records, e)
		}
	}
	if off < len(data) {
		return off, &tornError{offset: off}
	}
	return off, nil
}

// parseLine splits "k <seq>[ payload] <crc>" and checks the crc.
func parseLine(line []byte) (kind byte, seq uint64, payload []byte, ok bool) {
	if len(line) < 2+1+1+8 || line[1] != ' ' {
		return 0, 0, nil, false
	}
	body, sum := line[:len(line)-9], line[len(line)-8:]
	if line[len(line)-9] != ' ' {
		return 0, 0, nil, false
	}
	want, err := strconv.ParseUint(string(sum), 16, 32)
	if err != nil || crc32.Checksum(body, crcTable) != uint32(want) {
		return 0, 0, nil, false
	}
	kind = body[0]
	rest := body[2:]
	numEnd := bytes.IndexByte(rest, ' ')
	if numEnd < 0 {
		numEnd = len(rest)
	} else {
		payload = rest[numEnd+1:]
	}
	seq, err = strconv.ParseUint(string(rest[:numEnd]), 10, 64)
	if err != nil {
		return 0, 0, nil, false
	}
	switch {
	case kind == 'r' && len(payload) > 0:
	case kind == 'a' && payload == nil:
	default:
		return 0, 0, nil, false
	}
	return kind, seq, payload, true
}

// appendLine renders one outbox line into dst.
func appendLine(dst []byte, kind byte, seq uint64, payload []byte) []byte {
	start := len(dst)
	dst = append(dst, kind, ' ')
	dst = strconv.AppendUint(dst, seq, 10)
	if payload != nil {
		dst = append(dst, ' ')
		dst = append(dst, payload...)
	}
	sum := crc32.Checksum(dst[start:], crcTable)
	dst = append(dst, ' ')
	dst = fmt.Appendf(dst, "%08x", sum)
	return append(dst, '\n')
}

// lineOverhead is the bytes a record line adds around its JSON.
func lineOverhead(seq uint64) int64 {
	return int64(2 + len(strconv.FormatUint(seq, 10)) + 1 + 9 + 1)
}

// write appends lines written to o.buf in one write(2), so that a record
// the caller was told about survives the process being killed. A failed
// write is cut back off the file so that later lines stay readable.
func (o *outbox) write(lines []byte) error {
	o.fmu.RLock()
	defer o.fmu.RUnlock()
	if o.broken != nil {
		return o.broken
	}
	n, err := o.f.Write(lines)
	if err != nil {
		if n > 0 {
			if terr := o.f.Truncate(o.size); terr != nil {
				o.broken = fmt.Errorf("device: outbox %s unusable after a failed write (%v) and a failed repair: %w", o.path, err, terr)
				return o.broken
			}
			if _, serr := o.f.Seek(o.size, io.SeekStart); serr != nil {
				o.broken = fmt.Errorf("device: outbox %s unusable: %w", o.path, serr)
				return o.broken
			}
		}
		return fmt.Errorf("device: write outbox %s: %w", o.path, err)
	}
	o.size += int64(n)
	return nil
}

func (o *outbox) appendRecord(seq uint64, line []byte) error {
	o.buf = appendLine(o.buf[:0], 'r', seq, line)
	if err := o.write(o.buf); err != nil {
		return err
	}
	o.live += int64(len(o.buf))
	return nil
}

func (o *outbox) appendSettled(seq uint64, freed int64) error {
	o.live -= freed
	o.buf = appendLine(o.buf[:0], 'a', seq, nil)
	return o.write(o.buf)
}

// sync makes every line written so far durable.
func (o *outbox) sync() error {
	o.fmu.RLock()
	defer o.fmu.RUnlock()
	if o.broken != nil {
		return o.broken
	}
	if err := o.f.Sync(); err != nil {
		return fmt.Errorf("device: fsync outbox %s: %w", o.path, err)
	}
	return nil
}

// shouldCompact tells whether rewriting the file with only the live records
// pays: when everything is settled and the file is no longer tiny, or when
// settled lines take most of a large file.
func (o *outbox) shouldCompact(queued int) bool {
	dead := o.size - o.live
	if queued == 0 {
		return o.size > 1<<20
	}
	return dead > 8<<20 && dead > o.live
}

// compact rewrites the file as the settled mark followed by the records of
// q, makes it durable and swaps it in by rename.
func (o *outbox) compact(settled uint64, q []*entry) error {
	o.fmu.Lock()
	defer o.fmu.Unlock()
	if o.broken != nil {
		return o.broken
	}
	tmp := o.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("device: compact outbox: %w", err)
	}
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("device: compact outbox %s: %w", o.path, err)
	}
	buf := appendLine(nil, 'a', settled, nil)
	var live int64
	for _, e := range q {
		n := len(buf)
		buf = appendLine(buf, 'r', e.seq, e.line)
		live += int64(len(buf) - n)
		if len(buf) > 1<<20 {
			if _, err := f.Write(buf); err != nil {
				return fail(err)
			}
			buf = buf[:0]
		}
	}
	if _, err := f.Write(buf); err != nil {
		return fail(err)
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, o.path); err != nil {
		return fail(err)
	}
	if d, err := os.Open(o.dir); err == nil {
		_ = d.Sync() // make the rename durable; not every platform can
		d.Close()
	}
	o.f.Close()
	o.f, o.size, o.live = f, size, live
	return nil
}

func (o *outbox) close() error {
	o.fmu.Lock()
	defer o.fmu.Unlock()
	err := o.f.Sync()
	if cerr := o.f.Close(); err == nil {
		err = cerr
	}
	return err
}
