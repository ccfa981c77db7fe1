package events

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"gpt-load/domain"
)

// Envelope headers. nats.go headers are case-sensitive: always use these constants.
const (
	hdrType   = "Gl-Type"
	hdrSchema = "Gl-Schema"
	hdrTime   = "Gl-Time"
	hdrNode   = "Gl-Node"
	hdrActor  = "Gl-Actor"
	// hdrEnc is "aes-gcm" when the secret fields of the payload (domain.MapSecrets) are
	// sealed with the Cipher, each on its own; a message without it is read in clear. The
	// set of secret fields of a fact type only ever grows with a new marker value, so that
	// what a marker promises stays true of every message that carries it.
	hdrEnc    = "Gl-Enc"
	encAESGCM = "aes-gcm"
	// hdrKeyID names the key that sealed a message (Cipher.KeyID), beside Gl-Enc. Messages
	// written before key ids existed lack it; their values are checked one by one.
	hdrKeyID = "Gl-Key-Id"
)

// checkSealedBy returns an error when a message sealed (Gl-Enc) cannot be opened with c:
// no key is set, or its Gl-Key-Id names another key.
func checkSealedBy(c *Cipher, h nats.Header) error {
	if h.Get(hdrEnc) != encAESGCM {
		return nil
	}
	id := h.Get(hdrKeyID)
	if !c.Enabled() {
		return &KeyMismatchError{Sealed: id}
	}
	if id != "" {
		return c.CheckKeyID(id)
	}
	return nil
}

// eventSubjects are the subjects of the domain-event stream. One aggregate is one subject
// prefix (see prefix), so a guard can name all its events. The request-log stream has
// gl.reqlog.> beside them.
var eventSubjects = []string{"gl.settings.>", "gl.groups.>", "gl.keys.>", "gl.health.>", "gl.proxykeys.>", rebaseSubjectPrefix + ">"}

// Event is an event read from the log: the envelope and the decoded fact.
type Event struct {
	ID      string
	Type    string
	Schema  int
	Subject string
	Meta    domain.Meta
	Fact    domain.Fact
	// Rebase, when set, is the whole state a committed rebase (rebase.go) replaces the
	// reader's with; Fact is nil then.
	Rebase *domain.State
}

// prefix is the subject prefix of an aggregate; its guard is prefix + ".>".
func prefix(a domain.Aggregate) string {
	switch a.Kind {
	case domain.AggSettings:
		return "gl.settings"
	case domain.AggGroups:
		return "gl.groups"
	case domain.AggKeys:
		return "gl.keys." + strconv.FormatUint(a.GroupID, 10)
	case domain.AggHealth:
		return "gl.health." + strconv.FormatUint(a.GroupID, 10)
	case domain.AggProxyKeys:
		return "gl.proxykeys"
	}
	panic("events: unknown aggregate")
}

func guard(a domain.Aggregate) string { return prefix(a) + ".>" }

func subject(a domain.Aggregate, name string) string {
	return prefix(a) + "." + strings.ReplaceAll(name, ".", "_")
}

// codec turns facts into messages and back.
type codec struct {
	reg    *registry
	cipher *Cipher
	node   string
}

func (c *codec) encode(f domain.Fact, id, actor string, at time.Time) (*nats.Msg, error) {
	k, err := c.reg.of(f)
	if err != nil {
		return nil, err
	}
	enc := false
	if c.cipher.Enabled() {
		var err error
		if f, enc, err = domain.MapSecrets(f, c.cipher.Encrypt); err != nil {
			return nil, fmt.Errorf("encrypt %s: %w", k.name, err)
		}
	}
	body, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", k.name, err)
	}
	msg := nats.NewMsg(subject(domain.AggregateOf(f), k.name))
	msg.Data = body
	msg.Header.Set(nats.MsgIdHdr, id)
	msg.Header.Set(hdrType, k.name)
	msg.Header.Set(hdrSchema, strconv.Itoa(k.schema))
	msg.Header.Set(hdrTime, at.UTC().Format(time.RFC3339Nano))
	msg.Header.Set(hdrNode, c.node)
	msg.Header.Set(hdrActor, actor)
	if enc {
		msg.Header.Set(hdrEnc, encAESGCM)
		msg.Header.Set(hdrKeyID, c.cipher.KeyID())
	}
	return msg, nil
}

// decode reads a stored message. An event it cannot read is an error: the projection stops
// rather than skip a fact.
func (c *codec) decode(subj string, h nats.Header, data []byte, seq uint64) (Event, error) {
	ev := Event{ID: h.Get(nats.MsgIdHdr), Type: h.Get(hdrType), Subject: subj}
	ev.Meta = domain.Meta{Seq: seq, Node: h.Get(hdrNode), Actor: h.Get(hdrActor)}
	k, ok := c.reg.byName[ev.Type]
	if !ok {
		return ev, fmt.Errorf("event %d: unknown type %q (written by a newer version?)", seq, ev.Type)
	}
	var err error
	if ev.Schema, err = strconv.Atoi(h.Get(hdrSchema)); err != nil || ev.Schema < 1 {
		return ev, fmt.Errorf("event %d (%s): bad schema version %q", seq, ev.Type, h.Get(hdrSchema))
	}
	if ev.Schema > k.schema {
		return ev, fmt.Errorf("event %d (%s): schema %d is newer than this version reads (%d)", seq, ev.Type, ev.Schema, k.schema)
	}
	if ev.Meta.Time, err = time.Parse(time.RFC3339Nano, h.Get(hdrTime)); err != nil {
		return ev, fmt.Errorf("event %d (%s): bad time: %w", seq, ev.Type, err)
	}
	if y := ev.Meta.Time.UTC().Year(); y < 1 || y > 9999 {
		// The encoder writes UTC: a time that is only in range with its offset was not
		// written by it, and could not be written back.
		return ev, fmt.Errorf("event %d (%s): bad time %q: out of the years 1-9999 in UTC", seq, ev.Type, h.Get(hdrTime))
	}
	if ev.Fact, err = k.decode(data); err != nil {
		return ev, fmt.Errorf("event %d (%s): %w", seq, ev.Type, err)
	}
	if h.Get(hdrEnc) == encAESGCM {
		if err := checkSealedBy(c.cipher, h); err != nil {
			return ev, fmt.Errorf("event %d (%s): %w", seq, ev.Type, err)
		}
		var sealed bool
		if ev.Fact, sealed, err = domain.MapSecrets(ev.Fact, c.cipher.Decrypt); err != nil {
			return ev, fmt.Errorf("event %d (%s): %w", seq, ev.Type, err)
		}
		if !sealed {
			return ev, fmt.Errorf("event %d (%s): unexpected encrypted payload", seq, ev.Type)
		}
	}
	return ev, nil
}
