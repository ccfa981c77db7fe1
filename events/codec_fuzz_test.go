package events

import (
	"reflect"
	"slices"
	"testing"

	"github.com/nats-io/nats.go"
)

// FuzzDecodeEvent hands the codec arbitrary headers and payloads, as a stream written by
// another version, or damaged, could hold: decoding never panics; an event it accepts has
// a fact, and that fact encodes and decodes back to itself (with and without a cipher).
func FuzzDecodeEvent(f *testing.F) {
	reg := newRegistry()
	names := make([]string, 0, len(reg.byName))
	for n := range reg.byName {
		names = append(names, n)
	}
	slices.Sort(names)
	for i := range names {
		f.Add(uint8(i), "", "1", "2026-01-02T03:04:05Z", false, []byte(`{}`))
	}
	f.Add(uint8(0), "", "1", "2026-01-02T03:04:05.123456789+08:00", false, []byte(`{"group_id":1,"keys":[{"id":1,"value":"sk-a"}]}`))
	f.Add(uint8(0), "", "0", "x", true, []byte(`null`))
	f.Add(uint8(255), "key.failed", "99", "", true, []byte(`[`))
	ciphers := []*Cipher{{}, nil}
	var err error
	if ciphers[1], err = NewCipher("fuzz-Encryption-Key-0123456789"); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, pick uint8, typ, schema, at string, sealed bool, data []byte) {
		if int(pick) < len(names) {
			typ = names[pick]
		}

		h := nats.Header{}
		h.Set(nats.MsgIdHdr, "fuzz-id")
		h.Set(hdrType, typ)
		h.Set(hdrSchema, schema)
		h.Set(hdrTime, at)
		if sealed {
			h.Set(hdrEnc, encAESGCM)
		}
		for _, ci := range ciphers {
			c := &codec{reg: reg, cipher: ci, node: "fuzz"}
			ev, err := c.decode("subject", h, data, 7)
			if err != nil {
				continue
			}
			if ev.Fact == nil {
				t.Fatalf("accepted event %q without a fact", typ)
			}
			// Encoding may normalise (an absent list becomes empty), once: a fact that has
			// been through the codec comes back the same.
			once := roundTrip(t, c, ev)
			twice := roundTrip(t, c, once)
			if !reflect.DeepEqual(once.Fact, twice.Fact) {
				t.Fatalf("%s changed on a round trip:\n%#v\n%#v", typ, once.Fact, twice.Fact)
			}
			if !twice.Meta.Time.Equal(ev.Meta.Time) || twice.Schema < 1 {
				t.Fatalf("envelope changed: schema %d, time %v then %v", twice.Schema, ev.Meta.Time, twice.Meta.Time)
			}
		}
	})
}

func roundTrip(t *testing.T, c *codec, ev Event) Event {
	t.Helper()
	msg, err := c.encode(ev.Fact, ev.ID, ev.Meta.Actor, ev.Meta.Time)
	if err != nil {
		t.Fatalf("accepted fact %#v does not encode: %v", ev.Fact, err)
	}
	again, err := c.decode("subject", msg.Header, msg.Data, 7)
	if err != nil {
		t.Fatalf("re-encoded %s does not decode: %v\n%s", ev.Type, err, msg.Data)
	}
	return again
}
