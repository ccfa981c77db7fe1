package domain

import (
	"encoding/binary"
	"fmt"
	"sort"
	"unsafe"
)

// KeySet holds the keys of one group. Keys sit in id order (ids only grow, so appending
// keeps the order); a removed key leaves a tombstone until enough of them justify a
// compaction, so removals stay cheap and positions stable between compactions.
//
// The hash index maps the first 8 bytes of a key hash to its position: a million keys cost
// ~16 MB of index instead of ~40 MB with full hashes as map keys. Two hashes of one group
// sharing those 8 bytes (about 1 in 10^7 for a million keys) go to a small overflow map.
type KeySet struct {
	keys     []Key
	index    map[uint64]int32
	overflow map[KeyHash]int32
	live     int
	active   int
	dead     int
}

func newKeySet(capacity int) *KeySet {
	return &KeySet{keys: make([]Key, 0, capacity), index: make(map[uint64]int32, capacity)}
}

func hashPrefix(h KeyHash) uint64 { return binary.LittleEndian.Uint64(h[:8]) }

// Len is the number of keys in the set; Active the number with status active.
func (s *KeySet) Len() int    { return s.live }
func (s *KeySet) Active() int { return s.active }

// Invalid is the number of keys with status invalid.
func (s *KeySet) Invalid() int { return s.live - s.active }

func (s *KeySet) pos(h KeyHash) int {
	if i, ok := s.index[hashPrefix(h)]; ok && s.keys[i].Hash == h {
		return int(i)
	}
	if i, ok := s.overflow[h]; ok {
		return int(i)
	}
	return -1
}

// ByHash returns the key with hash h.
func (s *KeySet) ByHash(h KeyHash) (*Key, bool) {
	if i := s.pos(h); i >= 0 {
		return &s.keys[i], true
	}
	return nil, false
}

func (s *KeySet) posByID(id uint64) int {
	i := sort.Search(len(s.keys), func(i int) bool { return s.keys[i].ID >= id })
	if i < len(s.keys) && s.keys[i].ID == id && s.keys[i].Status != keyRemoved {
		return i
	}
	return -1
}

// ByID returns the key with the given id.
func (s *KeySet) ByID(id uint64) (*Key, bool) {
	if i := s.posByID(id); i >= 0 {
		return &s.keys[i], true
	}
	return nil, false
}

// Each calls f for every key in id order until f returns false. The pointer is only
// valid during the call.
func (s *KeySet) Each(f func(k *Key) bool) {
	for i := range s.keys {
		if s.keys[i].Status == keyRemoved {
			continue
		}
		if !f(&s.keys[i]) {
			return
		}
	}
}

// EachDesc is Each in descending id order.
func (s *KeySet) EachDesc(f func(k *Key) bool) {
	for i := len(s.keys) - 1; i >= 0; i-- {
		if s.keys[i].Status == keyRemoved {
			continue
		}
		if !f(&s.keys[i]) {
			return
		}
	}
}

func (s *KeySet) indexAt(i int) {
	h := s.keys[i].Hash
	p := hashPrefix(h)
	if _, taken := s.index[p]; taken {
		if s.overflow == nil {
			s.overflow = make(map[KeyHash]int32)
		}
		s.overflow[h] = int32(i)
		return
	}
	s.index[p] = int32(i)
}

// add appends a key; the caller has checked that its hash is new to the set.
func (s *KeySet) add(k Key) {
	if len(s.keys) == cap(s.keys) {
		// Grow by half at least: append's own growth of a large slice (1.25x) made the
		// copies a third of the CPU of a million-key import; doubling would leave up to
		// twice the memory idle until the next trim.
		grown := make([]Key, len(s.keys), cap(s.keys)+max(cap(s.keys)/2, 1024))
		copy(grown, s.keys)
		s.keys = grown
	}
	s.keys = append(s.keys, k)
	s.indexAt(len(s.keys) - 1)
	s.live++
	if k.Status == KeyActive {
		s.active++
	}
}

func (s *KeySet) setStatus(k *Key, st KeyStatus) {
	if k.Status == st {
		return
	}
	if k.Status == KeyActive {
		s.active--
	}
	if st == KeyActive {
		s.active++
	}
	k.Status = st
}

func (s *KeySet) remove(i int) {
	k := &s.keys[i]
	if k.Status == keyRemoved {
		return
	}
	h := k.Hash
	if j, ok := s.index[hashPrefix(h)]; ok && int(j) == i {
		delete(s.index, hashPrefix(h))
	} else {
		delete(s.overflow, h)
	}
	if k.Status == KeyActive {
		s.active--
	}
	s.live--
	s.dead++
	*k = Key{ID: k.ID, Status: keyRemoved} // drop the value at once
}

// compact drops tombstones once they are a quarter of the slots, or all of them.
func (s *KeySet) compact() {
	if s.dead == 0 || (s.live > 0 && s.dead*4 < len(s.keys)) {
		return
	}
	kept := make([]Key, 0, s.live)
	for i := range s.keys {
		if s.keys[i].Status != keyRemoved {
			kept = append(kept, s.keys[i])
		}
	}
	s.keys = kept
	s.dead = 0
	s.index = make(map[uint64]int32, len(kept))
	s.overflow = nil
	for i := range s.keys {
		s.indexAt(i)
	}
}

// trim gives the set exactly the memory it needs: the key slice at its length, and all
// values in one string (a replay leaves one allocation per value and a slice grown by
// doubling). Callers holding the old value strings keep them alive until they drop them.
func (s *KeySet) trim() {
	s.compact()
	if cap(s.keys) > len(s.keys)+len(s.keys)/16 {
		s.keys = append(make([]Key, 0, len(s.keys)), s.keys...)
	}
	total := 0
	for i := range s.keys {
		total += len(s.keys[i].Value)
	}
	buf := make([]byte, 0, total)
	for i := range s.keys {
		buf = append(buf, s.keys[i].Value...)
	}
	arena := unsafe.String(unsafe.SliceData(buf), len(buf)) // buf is never written again
	off := 0
	for i := range s.keys {
		n := len(s.keys[i].Value)
		s.keys[i].Value = arena[off : off+n]
		off += n
	}
}

// Trim gives every key set exactly the memory it needs; the projection calls it once a
// long replay is done.
func (s *State) Trim() {
	for _, ks := range s.keys {
		ks.trim()
	}
}

// Rekey gives every key the hash fn gives its value, as after a change of ENCRYPTION_KEY,
// and forgets the aggregate versions: the state is about to become the first entry of a
// new log, in which no aggregate has an event yet. Ids, statuses, failure counts and
// cooldowns stay as they are.
func (s *State) Rekey(fn func(value string) KeyHash) error {
	for gid, ks := range s.keys {
		n := newKeySet(ks.live)
		var err error
		ks.Each(func(k *Key) bool {
			c := *k
			c.Hash = fn(k.Value)
			if n.pos(c.Hash) >= 0 {
				err = fmt.Errorf("group %d: keys %d and another have the same hash under the new key", gid, k.ID)
				return false
			}
			n.add(c)
			return true
		})
		if err != nil {
			return err
		}
		s.keys[gid] = n
	}
	s.settingsVer, s.groupsVer = 0, 0
	s.keysVer = map[uint64]uint64{}
	return nil
}
