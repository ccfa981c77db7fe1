package proxy

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"gpt-load/domain"
	"gpt-load/proxy/channel"
)

// relay copies a successful upstream response to the client. Streams (and bodies of
// unknown length) are flushed after every read, so each SSE event reaches the client as
// soon as it arrives; nothing buffers them. Token usage is read on the way: from the
// events of a stream, from the tail of a plain body.
func (p *request) relay(resp *http.Response, key poolKey, upAddr string) {
	defer resp.Body.Close()
	dst := p.w.Header()
	copyHeader(dst, resp.Header, key.Value)
	isSSE := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	stream := p.stream || isSSE
	if stream {
		if resp.Header.Get("Content-Type") == "" {
			dst.Set("Content-Type", "text/event-stream")
		}
		dst.Set("Cache-Control", "no-cache")
		dst.Set("X-Accel-Buffering", "no")
	} else if resp.ContentLength >= 0 {
		dst["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
	}
	flushEach := stream || resp.ContentLength < 0
	p.w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(p.w)
	if flushEach {
		rc.Flush()
	}

	enc := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding")))
	// Usage is read for the request log and for a named key's token limits.
	wantUsage := p.h.logs != nil || p.named != nil
	track := wantUsage && enc == ""
	// A gzipped plain answer is kept (bounded) and read once relayed, for its usage.
	var gz []byte
	keepGzip := wantUsage && enc == "gzip" && !isSSE
	var usage channel.Usage
	var lines lineScanner
	var tail tailBuffer
	var pending []byte // the latest plain chunk, not yet in tail

	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	status := resp.StatusCode
	errMsg := ""
	for {
		if pending != nil {
			// The next read reuses buf: keep the chunk's bytes before they are overwritten.
			tail.add(pending)
			pending = nil
		}
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if _, werr := p.w.Write(chunk); werr != nil {
				status, errMsg = 499, "client closed the connection"
				break
			}
			if flushEach {
				if err := rc.Flush(); err != nil {
					status, errMsg = 499, "client closed the connection"
					break
				}
			}
			if keepGzip {
				if len(gz)+len(chunk) <= maxGzipUsage {
					gz = append(gz, chunk...)
				} else {
					keepGzip, gz = false, nil
				}
			}
			if track {
				if isSSE {
					lines.feed(chunk, func(line []byte) {
						if u, ok := channel.FindUsage(line); ok {
							usage.Merge(u)
						}
					})
				} else {
					// Copied only when another read follows: a body read in one go is
					// searched where it lies.
					pending = chunk
				}
			}
		}
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) {
				if p.r.Context().Err() != nil {
					status, errMsg = 499, "client closed the connection"
				} else {
					errMsg = mask("upstream response cut short: "+rerr.Error(), key.Value)
				}
			}
			break
		}
	}
	if track && !isSSE {
		last := pending
		if len(tail.bytes()) > 0 {
			if pending != nil {
				tail.add(pending)
			}
			last = tail.bytes()
		}
		if u, ok := channel.FindUsage(last); ok {
			usage = u
		}
	}
	if keepGzip && errMsg == "" {
		if u, ok := gzipUsage(gz); ok {
			usage = u
		}
	}
	if track && isSSE {
		lines.end(func(line []byte) {
			if u, ok := channel.FindUsage(line); ok {
				usage.Merge(u)
			}
		})
	}
	p.logRecord(domain.RequestFinal, key, status, errMsg == "" && status < 400, errMsg, upAddr, usage)
	if errMsg != "" && status != 499 {
		// The upstream broke off a response already under way: end the client's response
		// abnormally too, so it cannot mistake the part for the whole.
		panic(http.ErrAbortHandler)
	}
}

// lineScanner cuts a stream into lines and hands on those that may hold a usage object;
// other lines cost one scan for '\n'.
type lineScanner struct {
	partial []byte
}

const maxUsageLine = 1 << 20

func (s *lineScanner) feed(b []byte, f func(line []byte)) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if len(s.partial)+len(b) <= maxUsageLine {
				s.partial = append(s.partial, b...)
			}
			return
		}
		line := b[:i]
		if len(s.partial) > 0 {
			if len(s.partial)+len(line) <= maxUsageLine {
				s.partial = append(s.partial, line...)
			}
			line = s.partial
		}
		if channel.HasUsage(line) {
			f(line)
		}
		s.partial = s.partial[:0]
		b = b[i+1:]
	}
}

func (s *lineScanner) end(f func(line []byte)) {
	if len(s.partial) > 0 && channel.HasUsage(s.partial) {
		f(s.partial)
	}
}

// tailBuffer keeps the last bytes of a body, where providers put their usage.
type tailBuffer struct {
	b []byte
}

const tailKeep = 16 << 10

func (t *tailBuffer) add(chunk []byte) {
	if len(chunk) >= tailKeep {
		t.b = append(t.b[:0], chunk[len(chunk)-tailKeep:]...)
		return
	}
	if len(t.b)+len(chunk) > 2*tailKeep {
		keep := tailKeep - len(chunk)
		copy(t.b, t.b[len(t.b)-keep:])
		t.b = t.b[:keep]
	}
	t.b = append(t.b, chunk...)
}

func (t *tailBuffer) bytes() []byte { return t.b }

// maxGzipUsage bounds a compressed answer kept for reading its usage.
const maxGzipUsage = 1 << 20

// gzipUsage reads the usage at the end of a gzipped answer.
func gzipUsage(b []byte) (channel.Usage, bool) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return channel.Usage{}, false
	}
	var tail tailBuffer
	buf := make([]byte, 16<<10)
	total := 0
	for total < 8*maxGzipUsage {
		n, err := zr.Read(buf)
		total += n
		if n > 0 {
			tail.add(buf[:n])
		}
		if err != nil {
			break
		}
	}
	return channel.FindUsage(tail.bytes())
}
