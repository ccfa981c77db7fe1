// Package embedded runs a nats-server with JetStream inside the process, for a single node:
// the store on disk under the data directory, no TCP listener unless one is asked for, and
// clients connected in-process.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// Config says where the embedded server keeps its data and whether it listens on TCP.
type Config struct {
	Name    string // server name; the node name
	DataDir string // JetStream store goes to DataDir/jetstream
	Listen  string // host:port for TCP clients; empty: in-process only
	// MaxMemory and MaxStore bound JetStream; 0 lets the server choose.
	MaxMemory, MaxStore int64
	// SyncInterval is how often the store is forced to disk (0: the server's default of
	// two minutes); SyncAlways forces it after every write.
	SyncInterval time.Duration
	SyncAlways   bool
}

// Server is a running embedded nats-server.
type Server struct {
	srv *server.Server
	log zerolog.Logger
}

// Start starts the server and waits until it accepts connections.
func Start(cfg Config, log zerolog.Logger) (*Server, error) {
	opts := &server.Options{
		ServerName:         cfg.Name,
		JetStream:          true,
		StoreDir:           filepath.Join(cfg.DataDir, "jetstream"),
		JetStreamMaxMemory: cfg.MaxMemory,
		JetStreamMaxStore:  cfg.MaxStore,
		NoSigs:             true, // the server must not trap SIGINT/SIGTERM and exit the process
		DontListen:         cfg.Listen == "",
		SyncInterval:       cfg.SyncInterval,
		SyncAlways:         cfg.SyncAlways,
	}
	if cfg.Listen != "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("nats listen address %q: %w", cfg.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("nats listen port %q: %w", port, err)
		}
		opts.Host, opts.Port = host, p
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats: new server: %w", err)
	}
	srv.SetLogger(logAdapter{log}, false, false)
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("nats: embedded server not ready within 30s")
	}
	return &Server{srv: srv, log: log}, nil
}

// Connect opens an in-process client connection.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(s.srv), nats.Name("gpt-load")}, opts...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("nats: in-process connect: %w", err)
	}
	return nc, nil
}

// ClientURL is the TCP address clients can dial, "" when the server does not listen.
func (s *Server) ClientURL() string {
	if s.srv.Addr() == nil {
		return ""
	}
	return s.srv.ClientURL()
}

// Close shuts the server down and waits for it, within ctx.
func (s *Server) Close(ctx context.Context) error {
	s.srv.Shutdown()
	done := make(chan struct{})
	go func() { s.srv.WaitForShutdown(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("nats: shutdown: %w", ctx.Err())
	}
}

type logAdapter struct{ l zerolog.Logger }

func (a logAdapter) Noticef(format string, v ...any) { a.l.Debug().Msgf(format, v...) }
func (a logAdapter) Warnf(format string, v ...any)   { a.l.Warn().Msgf(format, v...) }
func (a logAdapter) Fatalf(format string, v ...any)  { a.l.Error().Msgf(format, v...) }
func (a logAdapter) Errorf(format string, v ...any)  { a.l.Error().Msgf(format, v...) }
func (a logAdapter) Debugf(format string, v ...any)  { a.l.Debug().Msgf(format, v...) }
func (a logAdapter) Tracef(format string, v ...any)  { a.l.Trace().Msgf(format, v...) }
