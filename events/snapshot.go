package events

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// snapshotMagic opens every snapshot file; the version after it is of the container, the
// state inside carries its own format version.
const snapshotMagic = "GLSNAP1\n"

// SnapshotInfo describes a snapshot: the log position it covers and the stream it was taken
// from.
type SnapshotInfo struct {
	Seq           uint64    `json:"seq"`
	StreamCreated time.Time `json:"stream_created"`
	Encrypted     bool      `json:"encrypted"`
	KeyID         string    `json:"key_id,omitempty"` // Cipher.KeyID of the key that sealed the body
	TakenAt       time.Time `json:"taken_at"`
	Bytes         int64     `json:"-"`
}

// ErrNoSnapshot means there is no usable snapshot: replay from the start.
var ErrNoSnapshot = errors.New("no snapshot")

// Snapshots keeps the latest snapshot of the projected state in one file of the node's
// data directory, written atomically (temporary file, fsync, rename). The body is sealed
// with the key-value cipher when encryption is on, and checksummed.
type Snapshots struct {
	path   string
	cipher *Cipher
}

// NewSnapshots keeps snapshots in dir.
func NewSnapshots(dir string, cipher *Cipher) *Snapshots {
	if cipher == nil {
		cipher = &Cipher{}
	}
	return &Snapshots{path: filepath.Join(dir, "state.snap"), cipher: cipher}
}

// Path is the snapshot file.
func (s *Snapshots) Path() string { return s.path }

// Remove deletes the snapshot: one that cannot be used (sealed with a retired key, taken
// from a log that was replaced) is not kept on disk.
func (s *Snapshots) Remove() error {
	if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}

// Save writes a snapshot whose body write produces.
func (s *Snapshots) Save(info SnapshotInfo, write func(io.Writer) error) (err error) {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("snapshot dir: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), ".state.snap.*")
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	info.Encrypted, info.KeyID = s.cipher.Enabled(), s.cipher.KeyID()
	head, err := json.Marshal(info)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(tmp, 1<<20)
	bw.WriteString(snapshotMagic)
	binary.Write(bw, binary.BigEndian, uint32(len(head)))
	bw.Write(head)
	sum := crc32.NewIEEE()
	sealed, err := s.cipher.SealWriter(io.MultiWriter(bw, sum))
	if err != nil {
		return err
	}
	if err := write(sealed); err != nil {
		return fmt.Errorf("snapshot body: %w", err)
	}
	if err := sealed.Close(); err != nil {
		return err
	}
	binary.Write(bw, binary.BigEndian, sum.Sum32())
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("snapshot write: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("snapshot sync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("snapshot rename: %w", err)
	}
	if d, err := os.Open(filepath.Dir(s.path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Load opens the snapshot and hands its body to read. The checksum is verified after
// read returns, so read must consume the whole body and its result must be discarded if
// Load fails. ErrNoSnapshot: there is none.
func (s *Snapshots) Load(read func(info SnapshotInfo, body io.Reader) error) (SnapshotInfo, error) {
	f, err := os.Open(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return SnapshotInfo{}, ErrNoSnapshot
	}
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return SnapshotInfo{}, err
	}
	br := bufio.NewReaderSize(f, 1<<20)
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != snapshotMagic {
		return SnapshotInfo{}, fmt.Errorf("snapshot %s: not a snapshot file", s.path)
	}
	var n uint32
	if err := binary.Read(br, binary.BigEndian, &n); err != nil || n > 1<<20 {
		return SnapshotInfo{}, fmt.Errorf("snapshot %s: bad header", s.path)
	}
	head := make([]byte, n)
	if _, err := io.ReadFull(br, head); err != nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot %s: %w", s.path, err)
	}
	var info SnapshotInfo
	if err := json.Unmarshal(head, &info); err != nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot %s: header: %w", s.path, err)
	}
	info.Bytes = st.Size()
	if info.Encrypted != s.cipher.Enabled() {
		return info, fmt.Errorf("snapshot %s: written with encryption=%v, now %v", s.path, info.Encrypted, s.cipher.Enabled())
	}
	if info.Encrypted && info.KeyID != "" {
		if err := s.cipher.CheckKeyID(info.KeyID); err != nil {
			return info, fmt.Errorf("snapshot %s: %w", s.path, err)
		}
	}
	bodyLen := st.Size() - int64(len(snapshotMagic)) - 4 - int64(n) - 4
	if bodyLen < 0 {
		return info, fmt.Errorf("snapshot %s: truncated", s.path)
	}
	sum := crc32.NewIEEE()
	body := io.TeeReader(io.LimitReader(br, bodyLen), sum)
	opened, err := s.cipher.OpenReader(body)
	if err != nil {
		return info, fmt.Errorf("snapshot %s: %w", s.path, err)
	}
	if err := read(info, opened); err != nil {
		return info, fmt.Errorf("snapshot %s: %w", s.path, err)
	}
	if _, err := io.Copy(io.Discard, body); err != nil {
		return info, err
	}
	var want uint32
	if err := binary.Read(br, binary.BigEndian, &want); err != nil || want != sum.Sum32() {
		return info, fmt.Errorf("snapshot %s: checksum mismatch", s.path)
	}
	return info, nil
}
