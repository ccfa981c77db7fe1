package domain

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"unsafe"
)

// StateFormat is the version of the encoding written by State.Encode. A snapshot in another
// format is not read: the state is rebuilt from the log instead.
const StateFormat = 2

// stateHeader is the small part of the state, kept as JSON for readability.
type stateHeader struct {
	Format         int               `json:"format"`
	Seq            uint64            `json:"seq"`
	Settings       Settings          `json:"settings"`
	SettingsSeeded bool              `json:"settings_seeded"`
	Groups         []*Group          `json:"groups"`
	Ranges         []idRange         `json:"ranges"`
	NextGroupID    uint64            `json:"next_group_id"`
	NextKeyID      uint64            `json:"next_key_id"`
	SettingsVer    uint64            `json:"settings_ver"`
	GroupsVer      uint64            `json:"groups_ver"`
	KeysVer        map[uint64]uint64 `json:"keys_ver"`
	KeySets        []keySetHeader    `json:"key_sets"`
	// Named proxy keys; absent from snapshots written before they existed.
	ProxyKeys      []*ProxyKey `json:"proxy_keys,omitempty"`
	NextProxyKeyID uint64      `json:"next_proxy_key_id,omitempty"`
	ProxyKeysVer   uint64      `json:"proxy_keys_ver,omitempty"`
}

type keySetHeader struct {
	GroupID    uint64 `json:"group_id"`
	Keys       int    `json:"keys"`
	ValueBytes int    `json:"value_bytes"`
}

// Encode writes the whole state: a JSON header, then for each key set one block of all key
// values followed by the fixed and variable fields of each key.
func (s *State) Encode(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	h := stateHeader{
		Format: StateFormat, Seq: s.Seq, Settings: s.Settings, SettingsSeeded: s.SettingsSeeded,
		Ranges: s.ranges, NextGroupID: s.nextGroupID, NextKeyID: s.nextKeyID,
		SettingsVer: s.settingsVer, GroupsVer: s.groupsVer, KeysVer: s.keysVer,
		ProxyKeys: s.ProxyKeys(), NextProxyKeyID: s.nextProxyKeyID, ProxyKeysVer: s.proxyKeysVer,
	}
	for _, g := range s.groups {
		h.Groups = append(h.Groups, g)
	}
	sort.Slice(h.Groups, func(i, j int) bool { return h.Groups[i].ID < h.Groups[j].ID })
	for _, g := range h.Groups {
		ks := s.keys[g.ID]
		kh := keySetHeader{GroupID: g.ID}
		ks.Each(func(k *Key) bool {
			kh.Keys++
			kh.ValueBytes += len(k.Value)
			return true
		})
		h.KeySets = append(h.KeySets, kh)
	}
	head, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("encode state header: %w", err)
	}
	buf := binary.AppendUvarint(make([]byte, 0, 256), uint64(len(head)))
	bw.Write(buf)
	bw.Write(head)
	for _, kh := range h.KeySets {
		ks := s.keys[kh.GroupID]
		ks.Each(func(k *Key) bool { bw.WriteString(k.Value); return true })
		ks.Each(func(k *Key) bool {
			buf = buf[:0]
			buf = binary.AppendUvarint(buf, k.ID)
			buf = binary.AppendUvarint(buf, uint64(len(k.Value)))
			buf = append(buf, k.Hash[:]...)
			st := byte(k.Status)
			if k.Disabled {
				st |= disabledBit
			}
			buf = append(buf, st)
			buf = binary.AppendUvarint(buf, uint64(k.FailureCount))
			buf = binary.AppendVarint(buf, k.CreatedAt)
			buf = binary.AppendVarint(buf, k.UpdatedAt)
			buf = binary.AppendVarint(buf, k.CooldownUntil)
			buf = binary.AppendUvarint(buf, uint64(len(k.Notes)))
			buf = append(buf, k.Notes...)
			buf = binary.AppendUvarint(buf, uint64(len(k.LastError)))
			buf = append(buf, k.LastError...)
			bw.Write(buf)
			return true
		})
	}
	return bw.Flush()
}

// disabledBit marks a disabled key in the status byte of the encoding.
const disabledBit = 0x80

var errCorrupt = errors.New("state encoding is corrupt")

// DecodeState reads what Encode wrote.
func DecodeState(r io.Reader) (*State, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	n, err := binary.ReadUvarint(br)
	if err != nil || n > 1<<30 {
		return nil, fmt.Errorf("state header length: %w", errCorrupt)
	}
	head, err := readBlock(br, int(n))
	if err != nil {
		return nil, fmt.Errorf("state header: %w", err)
	}
	var h stateHeader
	if err := json.Unmarshal(head, &h); err != nil {
		return nil, fmt.Errorf("state header: %w", err)
	}
	if h.Format != StateFormat {
		return nil, fmt.Errorf("state format %d, want %d", h.Format, StateFormat)
	}
	s := NewState(h.Settings)
	s.Seq, s.SettingsSeeded, s.ranges = h.Seq, h.SettingsSeeded, h.Ranges
	s.nextGroupID, s.nextKeyID = h.NextGroupID, h.NextKeyID
	s.settingsVer, s.groupsVer = h.SettingsVer, h.GroupsVer
	if h.KeysVer != nil {
		s.keysVer = h.KeysVer
	}
	for _, g := range h.Groups {
		if g == nil {
			return nil, fmt.Errorf("null group: %w", errCorrupt)
		}
		s.putGroup(g)
	}
	for _, k := range h.ProxyKeys {
		if k == nil || k.ID == 0 {
			return nil, fmt.Errorf("proxy key: %w", errCorrupt)
		}
		s.proxyKeys[k.ID] = k
	}
	s.nextProxyKeyID = max(h.NextProxyKeyID, 1)
	s.proxyKeysVer = h.ProxyKeysVer
	for _, kh := range h.KeySets {
		if _, ok := s.groups[kh.GroupID]; !ok || kh.Keys < 0 || kh.ValueBytes < 0 {
			return nil, fmt.Errorf("key set of group %d: %w", kh.GroupID, errCorrupt)
		}
		ks, err := decodeKeySet(br, kh)
		if err != nil {
			return nil, fmt.Errorf("key set of group %d: %w", kh.GroupID, err)
		}
		s.keys[kh.GroupID] = ks
	}
	return s, nil
}

func decodeKeySet(br *bufio.Reader, kh keySetHeader) (*KeySet, error) {
	block, err := readBlock(br, kh.ValueBytes)
	if err != nil {
		return nil, err
	}
	// One string holds every value of the set; keys refer to slices of it. The block is
	// never written again, so viewing it as a string is safe.
	arena := unsafe.String(unsafe.SliceData(block), len(block))
	// Room for the keys is made from what was really read, not from a count that a corrupt
	// header could inflate: values are never empty in practice (empty entries are dropped
	// before they become facts), so a set holds at most about as many keys as value bytes.
	// A set that holds more grows as its keys arrive.
	ks := newKeySet(min(kh.Keys, len(block)+keysHintSlack))
	off := 0
	var prev uint64
	for i := 0; i < kh.Keys; i++ {
		var k Key
		var err error
		k.GroupID = kh.GroupID
		if k.ID, err = binary.ReadUvarint(br); err != nil {
			return nil, err
		}
		vlen, err := binary.ReadUvarint(br)
		if err != nil || vlen > uint64(len(arena)-off) || k.ID <= prev {
			return nil, errCorrupt
		}
		prev = k.ID
		k.Value = arena[off : off+int(vlen)]
		off += int(vlen)
		if _, err := io.ReadFull(br, k.Hash[:]); err != nil {
			return nil, err
		}
		st, err := br.ReadByte()
		if err != nil {
			return nil, err
		}
		k.Disabled = st&disabledBit != 0
		if k.Status = KeyStatus(st &^ disabledBit); k.Status != KeyActive && k.Status != KeyInvalid {
			return nil, errCorrupt
		}
		fc, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, err
		}
		k.FailureCount = uint32(fc)
		for _, p := range []*int64{&k.CreatedAt, &k.UpdatedAt, &k.CooldownUntil} {
			if *p, err = binary.ReadVarint(br); err != nil {
				return nil, err
			}
		}
		if k.Notes, err = readString(br); err != nil {
			return nil, err
		}
		if k.LastError, err = readString(br); err != nil {
			return nil, err
		}
		if ks.pos(k.Hash) >= 0 {
			return nil, errCorrupt
		}
		ks.add(k)
	}
	if off != len(arena) {
		return nil, errCorrupt
	}
	return ks, nil
}

// keysHintSlack is room made for keys beyond one per value byte (see decodeKeySet).
const keysHintSlack = 1 << 12

// readBlock reads n bytes. Up to 1 MiB is allocated at once; a bigger block grows as its
// bytes arrive, so a corrupt length cannot allocate much more than the input holds.
func readBlock(r io.Reader, n int) ([]byte, error) {
	const step = 1 << 20
	b := make([]byte, 0, min(n, step))
	for len(b) < n {
		if len(b) == cap(b) {
			b = slices.Grow(b, min(n-len(b), len(b)))
		}
		k, err := io.ReadFull(r, b[len(b):min(n, cap(b))])
		b = b[:len(b)+k]
		if err != nil {
			return nil, err
		}
	}
	return b, nil
}

func readString(br *bufio.Reader) (string, error) {
	n, err := binary.ReadUvarint(br)
	if err != nil {
		return "", err
	}
	if n == 0 {
		return "", nil
	}
	if n > 1<<20 {
		return "", errCorrupt
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		return "", err
	}
	return string(b), nil
}
