package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
	"unicode/utf8"
)

// validLogName reports whether name may name a log: 1 to 128 letters,
// digits, '.', '_' or '-', not starting with '.'.
func validLogName(name string) bool {
	if name == "" || len(name) > 128 || name[0] == '.' {
		return false
	}
	for _, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

func (s *Store) postLog(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	name := strings.TrimPrefix(p, "/log/")
	if !validLogName(name) {
		fail(w, http.StatusBadRequest, "%s: want POST /log/NAME, NAME of letters, digits, '.', '_' and '-' (at most 128, not starting with '.')", p)
		return
	}
	if len(s.tokens) > 0 && !s.authorized(r, roleLog) {
		unauthorized(w, r, roleLog)
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opt.MaxLogBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			fail(w, http.StatusRequestEntityTooLarge, "%s: a log record may hold at most %d bytes", p, tooBig.Limit)
			return
		}
		fail(w, http.StatusBadRequest, "%s: reading the log record: %v", p, err)
		return
	}
	rec := formatLog(time.Now(), r.RemoteAddr, data)
	if len(rec) > 0 {
		s.logMu.Lock()
		err = s.appendLog(name, rec)
		s.logMu.Unlock()
		var full *logFullError
		if errors.As(err, &full) {
			fail(w, http.StatusRequestEntityTooLarge, "%s: %v", p, full)
			return
		}
		if err != nil {
			fsFail(w, p, err)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// logFullError is a log record past a cap.
type logFullError struct {
	what  string
	limit int64
}

func (e *logFullError) Error() string {
	return fmt.Sprintf("%s holds its limit of %d bytes: nothing more is taken", e.what, e.limit)
}

// appendLog adds rec to the machine's log, within the caps; the caller
// holds logMu.
func (s *Store) appendLog(name string, rec []byte) error {
	if err := s.root.MkdirAll("logs", 0o755); err != nil {
		return err
	}
	file := "logs/" + name + ".log"
	var size int64
	if fi, err := s.root.Stat(file); err == nil {
		size = fi.Size()
	}
	n := int64(len(rec))
	switch {
	case size+n > s.opt.MaxLogFile:
		return &logFullError{"the log of " + name, s.opt.MaxLogFile}
	case s.logTotal+n > s.opt.MaxLogTotal:
		return &logFullError{"logs/", s.opt.MaxLogTotal}
	}
	f, err := s.root.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	k, err := f.Write(rec)
	s.logTotal += int64(k)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// formatLog turns a record into log lines "TIME ADDR LINE", one per line
// of data, with control characters and invalid UTF-8 shown escaped so
// that a record cannot forge lines of its own.
func formatLog(t time.Time, addr string, data []byte) []byte {
	data = bytes.TrimSuffix(data, []byte("\n"))
	if len(data) == 0 {
		return nil
	}
	prefix := t.UTC().Format("2006-01-02T15:04:05.000Z") + " " + addr + " "
	var out bytes.Buffer
	for _, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte("\r"))
		out.WriteString(prefix)
		for len(line) > 0 {
			c, size := utf8.DecodeRune(line)
			switch {
			case c == utf8.RuneError && size == 1:
				out.WriteString(`\x` + hex2(line[0]))
			case c == '\t' || c >= 0x20 && c != 0x7f && (c < 0x80 || c >= 0xa0):
				out.Write(line[:size])
			case c < 0x80:
				out.WriteString(`\x` + hex2(byte(c)))
			default:
				fmt.Fprintf(&out, `\u%04x`, c)
			}
			line = line[size:]
		}
		out.WriteByte('\n')
	}
	return out.Bytes()
}

func hex2(b byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[b>>4], digits[b&15]})
}
