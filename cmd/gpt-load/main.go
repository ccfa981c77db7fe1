// Command gpt-load runs a node of the key-pool proxy: the event log (an embedded NATS
// server, or an external cluster), the projections, the admin API and the proxy.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "help", "-h", "--help":
			fmt.Println(usage)
			return
		case "health":
			// For container health checks: the runtime image has no shell and no curl.
			cfg, err := LoadConfig(os.LookupEnv, ".env")
			if err == nil {
				err = probeHealth(cfg, 5*time.Second)
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "gpt-load health: %v\n", err)
				os.Exit(1)
			}
			return
		case "admin-key":
			cfg, err := LoadConfig(os.LookupEnv, ".env")
			if err == nil {
				err = printAdminKey(cfg, os.Stdout)
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "gpt-load admin-key: %v\n", err)
				os.Exit(1)
			}
			return
		case "import-gptload":
			os.Exit(importGptload(os.Args[2:], os.Stdout, os.Stderr))
		case "migrate-keys":
			os.Exit(migrateKeys(os.Args[2:], os.Stdout, os.Stderr))
		default:
			fmt.Fprintf(os.Stderr, "gpt-load: unknown command %q\n\n%s\n", os.Args[1], usage)
			os.Exit(1)
		}
	}
	cfg, err := LoadConfig(os.LookupEnv, ".env")
	if err != nil {
		fmt.Fprintf(os.Stderr, "gpt-load: invalid configuration, nothing was started:\n%v\n", err)
		os.Exit(2)
	}
	log, closeLog, err := NewLogger(cfg.Log, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gpt-load: logging: %v\n", err)
		os.Exit(2)
	}
	defer closeLog.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log); err != nil && !errors.Is(err, context.Canceled) {
		log.Error().Err(err).Msg("gpt-load stopped with an error")
		closeLog.Close()
		os.Exit(1)
	}
	log.Info().Msg("gpt-load stopped")
}

const usage = `gpt-load: a key-pool proxy for OpenAI, Gemini and Anthropic APIs.

Usage:
  gpt-load            run a node (configuration from the environment and ./.env)
  gpt-load admin-key  print the admin key: AUTH_KEY, or the one kept in DATA_DIR
  gpt-load import-gptload --dsn <gpt-load DATABASE_DSN> [--encryption-key K]
                      [--dry-run] [--overwrite] [--with-logs]
                      bring a gpt-load 1.x database into this node (--help for more)
  gpt-load migrate-keys [--from OLD] [--to NEW]
                      enable, change or disable ENCRYPTION_KEY on all data at rest,
                      with every node stopped (no flags: more help)
  gpt-load health     exit 0 when the node on PORT answers /health with 200 (for
                      container health checks)
  gpt-load help       show this help

See README.md for the environment variables.`

// shutdownBudget splits SERVER_GRACEFUL_SHUTDOWN_TIMEOUT: HTTP drains for all of it but
// five seconds, which are left to flush the event log and take the last snapshot.
func shutdownBudget(total time.Duration) (httpDrain, rest time.Duration) {
	return total - 5*time.Second, 5 * time.Second
}

// probeHealth asks the node on this machine's PORT for /health and fails unless it
// answers 200.
func probeHealth(cfg Config, timeout time.Duration) error {
	host := cfg.Host
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	c := &http.Client{Timeout: timeout}
	resp, err := c.Get("http://" + net.JoinHostPort(host, strconv.Itoa(cfg.Port)) + "/health")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("/health answered %d: %s", resp.StatusCode, body)
	}
	return nil
}
