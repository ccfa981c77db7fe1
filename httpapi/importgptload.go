package httpapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/httpapi/tasks"
	"gpt-load/projections/gptload"
)

// taskImportGptload is the task type of POST /api/import/gptload.
const taskImportGptload tasks.Type = "IMPORT_GPTLOAD"

// maxImportBody bounds an uploaded gpt-load database: large (a million keys with their
// request logs), but bounded.
const maxImportBody = 4 << 30

// importGptload is POST /api/import/gptload: a multipart upload of a gpt-load 1.x SQLite
// file (field file) with the optional fields encryption_key, overwrite and dry_run. The
// file is kept in a temporary file while the import runs as a task; the encryption key
// is checked on a sample of keys before the answer, so a wrong or missing key is a 400
// and nothing is written. The answer is the task's first status, as for add-async.
// SpoolPattern names the files uploads rest in; a node removes those a crash left in its
// spool directory when it starts.
const SpoolPattern = "gpt-load-import-*.db"

func (a *admin) importGptload(w http.ResponseWriter, r *http.Request) {
	mr, err := r.MultipartReader()
	if err != nil {
		fail(w, r, &apiError{status: http.StatusBadRequest, code: codeBadRequest, text: "malformed multipart body: " + err.Error()})
		return
	}
	var (
		path string
		opts gptload.Options
	)
	defer func() {
		if path != "" {
			os.Remove(path)
		}
	}()
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fail(w, r, uploadError(err))
			return
		}
		switch part.FormName() {
		case "file":
			if path != "" {
				fail(w, r, errField(codeBadRequest, "file", "send one file"))
				return
			}
			if path, err = saveUpload(a.d.SpoolDir, part); err != nil {
				fail(w, r, uploadError(err))
				return
			}
		case "encryption_key":
			v, err := io.ReadAll(io.LimitReader(part, 4096))
			if err != nil {
				fail(w, r, uploadError(err))
				return
			}
			opts.EncryptionKey = strings.TrimSpace(string(v))
		case "overwrite", "dry_run":
			v, err := io.ReadAll(io.LimitReader(part, 16))
			if err != nil {
				fail(w, r, uploadError(err))
				return
			}
			b, perr := strconv.ParseBool(strings.TrimSpace(string(v)))
			if s := strings.TrimSpace(string(v)); s != "" && perr != nil {
				fail(w, r, errField(codeBadRequest, part.FormName(), "must be true or false"))
				return
			}
			if part.FormName() == "overwrite" {
				opts.Overwrite = b
			} else {
				opts.DryRun = b
			}
		}
		part.Close()
	}
	if path == "" {
		fail(w, r, errBadRequest(msgFileRequired))
		return
	}
	ctx, cancel := commandContext(r)
	defer cancel()
	src, err := gptload.Open(ctx, path)
	if err != nil {
		fail(w, r, errField(codeValidation, "file", strings.ReplaceAll(err.Error(), path, "the uploaded file")))
		return
	}
	im, err := gptload.Prepare(ctx, src, gptload.Target{Commands: a.cmd, State: a.state, Cipher: a.cipher, Actor: events.ActorAdmin}, opts)
	if err != nil {
		src.Close()
		var de *domain.Error
		if !errors.As(err, &de) {
			err = domain.Errorf(domain.EINVALID, "%s", err.Error())
		}
		fail(w, r, err)
		return
	}
	file := path
	st, err := a.tasks.Start(a.taskContext(r), taskImportGptload, "", im.TotalKeys(), func(ctx context.Context, p *tasks.Progress) (any, error) {
		defer os.Remove(file)
		defer src.Close()
		sum, err := im.Run(ctx, func(done, _ int) { p.Set(done) })
		if err != nil {
			return nil, err
		}
		if sum.DryRun {
			p.Set(im.TotalKeys()) // every key was looked at
		}
		return sum.Counts(), nil
	})
	if err != nil {
		src.Close()
		fail(w, r, err)
		return
	}
	path = "" // the task removes it
	ok(w, r, st)
}

// saveUpload copies an uploaded file into a file of its own (mode 0600) in dir (SQLite
// reads files, not streams) and returns its path. The caller removes it.
func saveUpload(dir string, part io.Reader) (string, error) {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", err
		}
	}
	f, err := os.CreateTemp(dir, SpoolPattern)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(f, part); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}
