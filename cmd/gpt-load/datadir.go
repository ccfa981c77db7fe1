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

	"gpt-load/events"
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

// errSealedNoKey is a file sealed with an ENCRYPTION_KEY read without one.
var errSealedNoKey = errors.New("sealed with an ENCRYPTION_KEY, and none is set")

// spoolDirName is the folder of DATA_DIR where uploads rest while they are imported.
const spoolDirName = "spool"

// cleanSpool removes what a crash left in the spool (an upload is only ever needed by
// the import that received it), and returns the spool's path.
func cleanSpool(dataDir string) (string, error) {
	dir := filepath.Join(dataDir, spoolDirName)
	left, err := filepath.Glob(filepath.Join(dir, "gpt-load-import-*"))
	if err != nil {
		return "", err
	}
	for _, f := range left {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("spool: %w", err)
		}
	}
	return dir, nil
}

// sealedPrefix marks an admin key file sealed with ENCRYPTION_KEY.
const sealedPrefix = "sealed:"

// keySealer seals and opens the admin key file; *events.Cipher is one.
type keySealer interface {
	Enabled() bool
	Encrypt(string) (string, error)
	Decrypt(string) (string, error)
}

// adminKey returns the admin key kept in DATA_DIR when AUTH_KEY is not set: read from
// the file when it exists, else generated at random and written there (mode 0600), so
// that it survives restarts. With ENCRYPTION_KEY set the file holds the key sealed, like
// every other secret at rest (an older clear file is sealed on the way). created tells
// that the key was made now.
func adminKey(dir string, c keySealer) (key string, created bool, err error) {
	path := filepath.Join(dir, adminKeyFileName)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		return openAdminKey(path, strings.TrimSpace(string(b)), c)
	case !errors.Is(err, fs.ErrNotExist):
		return "", false, fmt.Errorf("admin key file: %w", err)
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", false, fmt.Errorf("generate an admin key: %w", err)
	}
	key = "sk-admin-" + base64.RawURLEncoding.EncodeToString(raw[:])
	if err := writeAdminKey(path, key, c); err != nil {
		return "", false, err
	}
	return key, true, nil
}

func openAdminKey(path, stored string, c keySealer) (string, bool, error) {
	key, err := unsealAdminKey(path, stored, c)
	if err != nil {
		return "", false, err
	}
	if _, isSealed := strings.CutPrefix(stored, sealedPrefix); !isSealed && c.Enabled() {
		// Written before ENCRYPTION_KEY was set: seal it now.
		if err := writeAdminKey(path, stored, c); err != nil {
			return "", false, err
		}
	}
	return key, false, nil
}

// unsealAdminKey returns the admin key the file at path holds (stored is its content).
func unsealAdminKey(path, stored string, c keySealer) (string, error) {
	stored = strings.TrimSpace(stored)
	sealed, isSealed := strings.CutPrefix(stored, sealedPrefix)
	switch {
	case stored == "":
		return "", fmt.Errorf("%s is empty: delete it to have a new admin key generated, or set AUTH_KEY", path)
	case isSealed && !c.Enabled():
		return "", fmt.Errorf("%s: %w", path, errSealedNoKey)
	case isSealed:
		key, err := c.Decrypt(sealed)
		if err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
		return key, nil
	}
	return stored, nil
}

// writeAdminKey writes the file under a temporary name and renames it, so that a crash
// never leaves half a key.
func writeAdminKey(path, key string, c keySealer) error {
	content := key
	if c.Enabled() {
		sealed, err := c.Encrypt(key)
		if err != nil {
			return fmt.Errorf("seal the admin key: %w", err)
		}
		content = sealedPrefix + sealed
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content+"\n"), 0o600); err != nil {
		return fmt.Errorf("admin key file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("admin key file: %w", err)
	}
	return nil
}

// announceAdminKey prints a newly generated admin key once, where the person who started
// the node sees it, and not into the log file.
func announceAdminKey(w io.Writer, key, path string, sealed bool) {
	where := "It is kept in " + path + " (readable by this user only)"
	if sealed {
		where = "It is kept sealed with ENCRYPTION_KEY in " + path
	}
	fmt.Fprintf(w, `
================================================================================
  No AUTH_KEY was set, so an admin key was generated for this data directory:

      %s

  %s and used on every restart;
  'gpt-load admin-key' shows it again. Use it to log in and to call the admin
  API, for example:

      export AUTH_KEY=%s

  To choose your own key instead, set AUTH_KEY in the environment or in .env.
================================================================================

`, key, where, key)
}

// printAdminKey is the admin-key command: it prints the admin key in force for this
// configuration, AUTH_KEY or the key kept in DATA_DIR.
func printAdminKey(cfg Config, w io.Writer) error {
	if !cfg.AuthKeyFromDataDir {
		_, err := fmt.Fprintln(w, cfg.AuthKey)
		return err
	}
	c, err := events.NewCipher(cfg.EncryptionKey)
	if err != nil {
		return err
	}
	path := filepath.Join(cfg.DataDir, adminKeyFileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no admin key in %s yet: start the node once, and it generates one", cfg.DataDir)
	}
	if err != nil {
		return fmt.Errorf("admin key file: %w", err)
	}
	key, err := unsealAdminKey(path, string(b), c)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, key)
	return err
}
