package events

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"gpt-load/domain"
)

// A rebase is the whole projected state written into the log as one snapshot-like entry:
// the encoded state (domain.State.Encode), sealed as a stream with the cipher when
// encryption is on, cut into chunks that fit a message, then a commit message. Readers
// apply a rebase only when they read its commit, and then replace their whole state with
// it, so a rebase cut short by a crash is never seen. gpt-load migrate-keys writes one as
// the first entry of a new log after re-sealing everything under another key.
//
// It is written twice: first into the staging stream RekeyStream, where it waits while the
// old log is retired, then copied into the new EventsStream. A staged rebase with its
// commit is the point from which an interrupted migration resumes.
const (
	RekeyStream         = "GL_REKEY"
	rekeySubj           = "gl.rekey.>"
	rebaseSubjectPrefix = "gl.rebase."
	rekeySubjectPrefix  = "gl.rekey."
	rebaseChunkType     = "rebase.chunk"
	rebaseCommitType    = "rebase.commit"
	hdrRebase           = "Gl-Rebase" // the rebase id, on each chunk and the commit
	hdrChunk            = "Gl-Chunk"  // the chunk's index
	// rebaseHeaderRoom is what a chunk leaves of a message for headers.
	rebaseHeaderRoom = 4 << 10
)

// RebaseInfo is the commit of a rebase: what its chunks hold, and which log it replaces.
type RebaseInfo struct {
	ID        string    `json:"id"`
	Chunks    int       `json:"chunks"`
	Bytes     int64     `json:"bytes"`
	SHA256    string    `json:"sha256"`
	KeyID     string    `json:"key_id,omitempty"`      // the key that sealed the chunks
	FromKeyID string    `json:"from_key_id,omitempty"` // the key of the log it replaces
	Keys      int       `json:"keys"`
	TakenAt   time.Time `json:"taken_at"`
	// ReplacesSeq and ReplacesCreated identify the log the rebase was taken from: its last
	// sequence and its creation time.
	ReplacesSeq     uint64    `json:"replaces_seq"`
	ReplacesCreated time.Time `json:"replaces_created"`
}

// rebaseReader collects the chunks of a rebase until its commit.
type rebaseReader struct {
	id     string
	chunks int
	buf    bytes.Buffer
}

// chunk takes one chunk message; a chunk of another rebase than the one being collected
// starts over (the earlier one was cut short and has no commit).
func (r *rebaseReader) chunk(h nats.Header, data []byte) {
	id := h.Get(hdrRebase)
	n, err := strconv.Atoi(h.Get(hdrChunk))
	if id != r.id || err != nil || n != r.chunks {
		r.id, r.chunks = id, 0
		r.buf.Reset()
		if err != nil || n != 0 {
			r.id = "" // not the start of a rebase: wait for the next one
			return
		}
	}
	r.buf.Write(data)
	r.chunks++
}

// commit checks the collected chunks against the commit message and decodes the state.
func (r *rebaseReader) commit(c *Cipher, h nats.Header, data []byte, seq uint64) (*domain.State, RebaseInfo, error) {
	var info RebaseInfo
	if err := json.Unmarshal(data, &info); err != nil {
		return nil, info, fmt.Errorf("rebase commit %d: %w", seq, err)
	}
	defer func() { r.id, r.chunks = "", 0; r.buf.Reset() }()
	sum := sha256.Sum256(r.buf.Bytes())
	if info.ID != r.id || info.Chunks != r.chunks || info.Bytes != int64(r.buf.Len()) || info.SHA256 != hex.EncodeToString(sum[:]) {
		return nil, info, fmt.Errorf("rebase %s committed at %d: its chunks are missing or damaged", info.ID, seq)
	}
	// A rebase written in clear (encryption disabled) is read in clear whatever the cipher.
	var body io.Reader = bytes.NewReader(r.buf.Bytes())
	if h.Get(hdrEnc) == encAESGCM {
		if err := checkSealedBy(c, h); err != nil {
			return nil, info, fmt.Errorf("rebase %s at %d: %w", info.ID, seq, err)
		}
		var err error
		if body, err = c.OpenReader(body); err != nil {
			return nil, info, fmt.Errorf("rebase %s at %d: %w", info.ID, seq, err)
		}
	}
	st, err := domain.DecodeState(body)
	if err != nil {
		return nil, info, fmt.Errorf("rebase %s at %d: %w", info.ID, seq, err)
	}
	st.Seq = seq
	return st, info, nil
}

// isRebase tells whether a message of the event log is part of a rebase.
func isRebase(subject string) bool { return strings.HasPrefix(subject, rebaseSubjectPrefix) }

// rebaseEvent is the event a committed rebase is delivered as.
func rebaseEvent(subj string, h nats.Header, seq uint64, st *domain.State) Event {
	ev := Event{ID: h.Get(nats.MsgIdHdr), Type: rebaseCommitType, Subject: subj, Rebase: st}
	ev.Meta = domain.Meta{Seq: seq, Node: h.Get(hdrNode), Actor: h.Get(hdrActor)}
	ev.Meta.Time, _ = time.Parse(time.RFC3339Nano, h.Get(hdrTime))
	return ev
}

// Fold reads the whole log with this store's cipher, checking that every sealed value
// opens, and returns the state it folds to (seed in force on an empty log) and the
// position it read up to.
func (s *Store) Fold(ctx context.Context, seed domain.Settings) (*domain.State, Position, error) {
	pos, err := s.Position(ctx)
	if err != nil {
		return nil, pos, err
	}
	st := domain.NewState(seed)
	if pos.LastSeq == 0 || pos.LastSeq < pos.FirstSeq {
		return st, pos, nil
	}
	errEnd := errors.New("end of log")
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err = s.Follow(fctx, 0, func(ev Event, pending uint64) error {
		if ev.Rebase != nil {
			st = ev.Rebase
		} else {
			st.Apply(ev.Fact, ev.Meta)
		}
		if ev.Meta.Seq >= pos.LastSeq || pending == 0 {
			return errEnd
		}
		return nil
	})
	if !errors.Is(err, errEnd) {
		if err == nil {
			err = errors.New("the log ended early")
		}
		return nil, pos, err
	}
	return st, pos, nil
}

// StageRebase writes st, sealed with this store's cipher, into the staging stream with its
// commit, replacing whatever was staged before. from is the log st was folded from.
func (s *Store) StageRebase(ctx context.Context, st *domain.State, from Position, fromKeyID string) (RebaseInfo, error) {
	stage, err := s.stageStream(ctx)
	if err != nil {
		return RebaseInfo{}, err
	}
	if err := stage.Purge(ctx); err != nil {
		return RebaseInfo{}, fmt.Errorf("clear %s: %w", RekeyStream, err)
	}
	var body bytes.Buffer
	w, err := s.codec.cipher.SealWriter(&body)
	if err != nil {
		return RebaseInfo{}, err
	}
	if err := st.Encode(w); err != nil {
		return RebaseInfo{}, fmt.Errorf("encode the state: %w", err)
	}
	if err := w.Close(); err != nil {
		return RebaseInfo{}, err
	}
	sum := sha256.Sum256(body.Bytes())
	info := RebaseInfo{
		ID: nuid.Next(), Bytes: int64(body.Len()), SHA256: hex.EncodeToString(sum[:]),
		KeyID: s.codec.cipher.KeyID(), FromKeyID: fromKeyID, TakenAt: s.now().UTC(),
		ReplacesSeq: from.LastSeq, ReplacesCreated: from.Created,
	}
	for _, g := range st.Groups() {
		if ks := st.Keys(g.ID); ks != nil {
			info.Keys += ks.Len()
		}
	}
	size := max(s.maxMsg-rebaseHeaderRoom, 64<<10)
	if s.maxMsg <= 0 {
		size = 1 << 20
	}
	data := body.Bytes()
	for i := 0; len(data) > 0 || i == 0; i++ {
		n := min(len(data), size)
		msg := s.rebaseMsg(rekeySubjectPrefix+"chunk", rebaseChunkType, info.ID)
		msg.Header.Set(hdrChunk, strconv.Itoa(i))
		msg.Data = data[:n]
		data = data[n:]
		if _, err := s.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(RekeyStream)); err != nil {
			return info, fmt.Errorf("stage rebase chunk %d: %w", i, err)
		}
		info.Chunks++
	}
	commit := s.rebaseMsg(rekeySubjectPrefix+"commit", rebaseCommitType, info.ID)
	if commit.Data, err = json.Marshal(info); err != nil {
		return info, err
	}
	if _, err := s.js.PublishMsg(ctx, commit, jetstream.WithExpectStream(RekeyStream)); err != nil {
		return info, fmt.Errorf("stage rebase commit: %w", err)
	}
	return info, nil
}

func (s *Store) rebaseMsg(subj, typ, id string) *nats.Msg {
	msg := nats.NewMsg(subj)
	msg.Header.Set(hdrType, typ)
	msg.Header.Set(hdrSchema, "1")
	msg.Header.Set(hdrTime, s.now().UTC().Format(time.RFC3339Nano))
	msg.Header.Set(hdrNode, s.codec.node)
	msg.Header.Set(hdrActor, "system:migrate-keys")
	msg.Header.Set(hdrRebase, id)
	if s.codec.cipher.Enabled() {
		msg.Header.Set(hdrEnc, encAESGCM)
		msg.Header.Set(hdrKeyID, s.codec.cipher.KeyID())
	}
	return msg
}

func (s *Store) stageStream(ctx context.Context) (jetstream.Stream, error) {
	st, err := s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        RekeyStream,
		Description: "gpt-load: the re-sealed state while migrate-keys replaces the event log",
		Subjects:    []string{rekeySubj},
		Storage:     jetstream.FileStorage,
		Replicas:    s.replicas,
		Retention:   jetstream.LimitsPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", RekeyStream, err)
	}
	return st, nil
}

// StagedRebase returns the commit of the rebase waiting in the staging stream; ok is false
// when there is no staging stream or no committed rebase in it.
func StagedRebase(ctx context.Context, js jetstream.JetStream) (info RebaseInfo, ok bool, err error) {
	st, err := js.Stream(ctx, RekeyStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return info, false, nil
	}
	if err != nil {
		return info, false, fmt.Errorf("stream %s: %w", RekeyStream, err)
	}
	m, err := st.GetLastMsgForSubject(ctx, rekeySubjectPrefix+"commit")
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return info, false, nil
	}
	if err != nil {
		return info, false, fmt.Errorf("staged rebase: %w", err)
	}
	if err := json.Unmarshal(m.Data, &info); err != nil {
		return info, false, fmt.Errorf("staged rebase: %w", err)
	}
	return info, true, nil
}

// MigrationPending tells whether a key migration left its staging stream behind: the node
// must not start on a log that is being replaced.
func MigrationPending(ctx context.Context, js jetstream.JetStream) (bool, error) {
	_, err := js.Stream(ctx, RekeyStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stream %s: %w", RekeyStream, err)
	}
	return true, nil
}

// DropStage deletes the staging stream.
func DropStage(ctx context.Context, js jetstream.JetStream) error {
	err := js.DeleteStream(ctx, RekeyStream)
	if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("delete stream %s: %w", RekeyStream, err)
	}
	return nil
}

// RetireLog deletes the event stream when it is the log the staged rebase info was taken
// from, or a copy of the rebase that was cut short; it leaves a complete copy alone. It
// reports whether the stream now holds the complete rebase.
func RetireLog(ctx context.Context, js jetstream.JetStream, info RebaseInfo) (done bool, err error) {
	st, err := js.Stream(ctx, EventsStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stream %s: %w", EventsStream, err)
	}
	si, err := st.Info(ctx)
	if err != nil {
		return false, fmt.Errorf("stream %s: %w", EventsStream, err)
	}
	if si.Created.Equal(info.ReplacesCreated) {
		if si.State.LastSeq != info.ReplacesSeq {
			return false, fmt.Errorf("the event log moved on to %d since the rebase was staged at %d (was a node started?): run migrate-keys again", si.State.LastSeq, info.ReplacesSeq)
		}
	} else if m, err := st.GetLastMsgForSubject(ctx, rebaseSubjectPrefix+"commit"); err == nil && m.Header.Get(hdrRebase) == info.ID {
		return true, nil
	}
	if err := js.DeleteStream(ctx, EventsStream); err != nil {
		return false, fmt.Errorf("delete stream %s: %w", EventsStream, err)
	}
	return false, nil
}

// CopyStagedRebase copies the staged rebase into this store's (new, empty) event stream:
// chunks first, the commit last.
func (s *Store) CopyStagedRebase(ctx context.Context, info RebaseInfo) error {
	stage, err := s.js.Stream(ctx, RekeyStream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", RekeyStream, err)
	}
	si, err := stage.Info(ctx)
	if err != nil {
		return err
	}
	copied := 0
	for seq := si.State.FirstSeq; seq <= si.State.LastSeq && si.State.Msgs > 0; seq++ {
		m, err := stage.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read staged rebase %d: %w", seq, err)
		}
		if m.Header.Get(hdrRebase) != info.ID {
			continue
		}
		msg := nats.NewMsg(rebaseSubjectPrefix + strings.TrimPrefix(m.Subject, rekeySubjectPrefix))
		for k, vs := range m.Header {
			if !strings.HasPrefix(k, "Nats-") {
				msg.Header[k] = vs
			}
		}
		msg.Data = m.Data
		id := info.ID + "-" + strconv.FormatUint(seq, 10)
		if _, err := s.js.PublishMsg(ctx, msg, jetstream.WithMsgID(id), jetstream.WithExpectStream(EventsStream)); err != nil {
			return fmt.Errorf("copy rebase %d: %w", seq, err)
		}
		copied++
	}
	if copied != info.Chunks+1 {
		return fmt.Errorf("the staged rebase %s has %d of its %d messages", info.ID, copied, info.Chunks+1)
	}
	return nil
}

// CheckKey returns an error matching ErrKeyMismatch when the logs hold data this store's
// cipher cannot open: sealed with another key, sealed while no key is configured, or
// decrypted by migrate-keys while a key is configured. It looks at the first message of
// the event log and the last of each kind of aggregate, and at both ends of the
// request-log stream; a message written before key ids existed is opened in full. The
// reads are retried while a cluster settles (streams just created).
func (s *Store) CheckKey(ctx context.Context) error {
	type sample struct {
		stream string
		m      *jetstream.RawStreamMsg
	}
	var samples []sample
	var eventsLast uint64
	ends := func(ctx context.Context, name string, subjects []string) error {
		stream, err := s.js.Stream(ctx, name)
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		si, err := stream.Info(ctx)
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		if si.State.Msgs == 0 {
			return nil
		}
		if name == EventsStream {
			eventsLast = si.State.LastSeq
		}
		m, err := stream.GetMsg(ctx, si.State.FirstSeq)
		if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("read %s %d: %w", name, si.State.FirstSeq, err)
		}
		if err == nil {
			samples = append(samples, sample{name, m})
		}
		for _, subj := range subjects {
			m, err := stream.GetLastMsgForSubject(ctx, subj)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("read the last of %s: %w", subj, err)
			}
			samples = append(samples, sample{name, m})
		}
		return nil
	}
	if err := Retry(ctx, s.log, "read both ends of the logs", func(ctx context.Context) error {
		samples = samples[:0]
		if err := ends(ctx, EventsStream, eventSubjects); err != nil {
			return err
		}
		return ends(ctx, ReqLogStream, []string{reqLogSubj})
	}); err != nil {
		return err
	}
	c := s.codec.cipher
	for _, x := range samples {
		m := x.m
		if x.stream == EventsStream && m.Sequence == eventsLast && m.Header.Get(hdrType) == rebaseChunkType {
			return fmt.Errorf("the event log ends in a rebase without its commit (gpt-load migrate-keys was interrupted): run the same migrate-keys command again")
		}
		if m.Header.Get(hdrEnc) != encAESGCM {
			if isRebase(m.Subject) && c.Enabled() {
				// migrate-keys --from decrypted everything: a key set now would seal new
				// writes beside clear data, without anyone having asked for it.
				return fmt.Errorf("%s message %d: %w: the data was decrypted by gpt-load migrate-keys, and ENCRYPTION_KEY is set: unset it, or encrypt the data again with `gpt-load migrate-keys --to <key>`",
					x.stream, m.Sequence, ErrKeyMismatch)
			}
			continue
		}
		if err := checkSealedBy(c, m.Header); err != nil {
			return fmt.Errorf("%s message %d: %w", x.stream, m.Sequence, err)
		}
		if m.Header.Get(hdrKeyID) == "" && x.stream == EventsStream && !isRebase(m.Subject) {
			if _, err := s.codec.decode(m.Subject, m.Header, m.Data, m.Sequence); err != nil {
				if errors.Is(err, ErrDecrypt) {
					return fmt.Errorf("%w: %w", ErrKeyMismatch, err)
				}
				return err
			}
		}
	}
	return nil
}
