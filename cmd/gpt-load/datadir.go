package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// lockFileName and adminKeyFileName live directly under DATA_DIR.
const (
	lockFileName     = "gpt-load.lock"
	adminKeyFileName = "admin.key"
)

// dataDirLock is the exclusive hold of one node on its DATA_DIR: two nodes on one
// directory would each write their own JetStream store over the other's.
type dataDirLock struct {
	f *os.File
}

// lockDataDir takes the directory's lock file, creating the directory first. A second
// node is refused with the holder's PID, which the holder writes into the file.
func lockDataDir(dir string) (*dataDirLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data directory lock %s: %w", path, err)
	}
	if err := tryLock(f); err != nil {
		holder := "another process"
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
				holder = fmt.Sprintf("process %d", pid)
			}
		}
		f.Close()
		if errors.Is(err, errLocked) {
			return nil, fmt.Errorf("data directory %s is in use by %s (another gpt-load node?): one DATA_DIR belongs to one running node", dir, holder)
		}
		return nil, fmt.Errorf("data directory lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dataDirLock{f: f}, nil
}

// release gives the directory up. The file stays: removing it would race with a node
// that has just opened it.
func (l *dataDirLock) release() {
	if l == nil || l.f == nil {
		return
	}
	l.f.Truncate(0)
	unlock(l.f)
	l.f.Close()
	l.f = nil
}

var errLocked = errors.New("locked")

// adminKey returns the admin key kept in DATA_DIR when AUTH_KEY is not set: read from
// the file when it exists, else generated at random and written there (mode 0600), so
// that it survives restarts. created tells that it was made now.
func adminKey(dir string) (key string, created bool, err error) {
	path := filepath.Join(dir, adminKeyFileName)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		key = strings.TrimSpace(string(b))
		if key == "" {
			return "", false, fmt.Errorf("%s is empty: delete it to have a new admin key generated, or set AUTH_KEY", path)
		}
		return key, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", false, fmt.Errorf("admin key file: %w", err)
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", false, fmt.Errorf("generate an admin key: %w", err)
	}
	key = "sk-admin-" + base64.RawURLEncoding.EncodeToString(raw[:])
	// Written under a temporary name and renamed, so a crash never leaves half a key.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(key+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("admin key file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return "", false, fmt.Errorf("admin key file: %w", err)
	}
	return key, true, nil
}

// announceAdminKey prints a newly generated admin key once, where the person who started
// the node sees it, and not into the log file.
func announceAdminKey(w io.Writer, key, path string) {
	fmt.Fprintf(w, `
================================================================================
  No AUTH_KEY was set, so an admin key was generated for this data directory:

      %s

  It is kept in %s (readable by this user only) and used on
  every restart. Use it to log in and to call the admin API, for example:

      export AUTH_KEY=%s

  To choose your own key instead, set AUTH_KEY in the environment or in .env.
================================================================================

`, key, path, key)
}
