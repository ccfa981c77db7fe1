package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// composeFile is the part of a Compose file these tests read.
type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Build       map[string]string `yaml:"build"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Ports       []string          `yaml:"ports"`
		Volumes     []string          `yaml:"volumes"`
		DependsOn   yaml.Node         `yaml:"depends_on"`
		Healthcheck struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

func readCompose(t *testing.T, path string) composeFile {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

// substitute fills ${VAR:?msg} and ${VAR:-default} as Compose does, from vars.
func substitute(s string, vars map[string]string) string {
	re := regexp.MustCompile(`\$\{([A-Z_]+)(?::[-?]([^}]*))?\}`)
	return re.ReplaceAllStringFunc(s, func(m string) string {
		p := re.FindStringSubmatch(m)
		if v, ok := vars[p[1]]; ok {
			return v
		}
		if strings.Contains(m, ":-") {
			return p[2]
		}
		return ""
	})
}

// TestComposeCluster reads docker/compose.cluster.yml (no Docker engine runs here): three
// NATS servers routed to each other with JetStream, PostgreSQL, three nodes whose
// environment is a valid configuration of this binary naming every NATS server, and a
// reverse proxy on 3001; every stateful service has a named volume and a health check.
func TestComposeCluster(t *testing.T) {
	t.Parallel()
	c := readCompose(t, "../../docker/compose.cluster.yml")
	nats := []string{"nats-1", "nats-2", "nats-3"}
	nodes := []string{"gpt-load-1", "gpt-load-2", "gpt-load-3"}
	for _, name := range append(append(slices.Clone(nats), nodes...), "postgres", "proxy") {
		if _, ok := c.Services[name]; !ok {
			t.Fatalf("no service %s", name)
		}
	}
	for _, name := range nats {
		s := c.Services[name]
		cmd := strings.Join(s.Command, " ")
		for _, want := range []string{"--jetstream", "--cluster_name gpt-load", "--name " + name,
			"--routes nats://nats-1:6222,nats://nats-2:6222,nats://nats-3:6222"} {
			if !strings.Contains(cmd, want) {
				t.Errorf("%s: command %q lacks %q", name, cmd, want)
			}
		}
		if len(s.Healthcheck.Test) == 0 || len(s.Volumes) != 1 || !strings.HasSuffix(s.Volumes[0], ":/data") {
			t.Errorf("%s: health check %v, volumes %v", name, s.Healthcheck.Test, s.Volumes)
		}
	}
	vars := map[string]string{"AUTH_KEY": "compose-admin-key-0123456789", "POSTGRES_PASSWORD": "pw"}
	seen := map[string]bool{}
	for _, name := range nodes {
		s := c.Services[name]
		if s.Build["dockerfile"] != "docker/Dockerfile" || !slices.Equal(s.Healthcheck.Test, []string{"CMD", "/usr/local/bin/gpt-load", "health"}) {
			t.Errorf("%s: build %v, health check %v", name, s.Build, s.Healthcheck.Test)
		}
		if len(s.Volumes) != 1 || !strings.HasSuffix(s.Volumes[0], ":/app/data") {
			t.Errorf("%s: volumes %v, want one on /app/data", name, s.Volumes)
		}
		env := map[string]string{"DATA_DIR": t.TempDir()}
		for k, v := range s.Environment {
			env[k] = substitute(v, vars)
		}
		cfg, err := LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, "")
		if err != nil {
			t.Fatalf("%s: the environment is not a valid configuration: %v", name, err)
		}
		if cfg.NodeName != name || seen[cfg.NodeName] {
			t.Errorf("%s: NODE_NAME %q (each node needs its own)", name, cfg.NodeName)
		}
		seen[cfg.NodeName] = true
		if cfg.UsesEmbeddedNATS() || len(cfg.NATS.URLs) != 3 || cfg.NATS.Replicas != 3 {
			t.Errorf("%s: NATS %v with %d replicas, want the three servers and 3", name, cfg.NATS.URLs, cfg.NATS.Replicas)
		}
		for i, u := range cfg.NATS.URLs {
			if !strings.Contains(u, nats[i]+":4222") {
				t.Errorf("%s: NATS_URL %v does not name %s", name, cfg.NATS.URLs, nats[i])
			}
		}
		if !strings.HasPrefix(cfg.DatabaseDSN, "postgres://gpt_load:pw@postgres:5432/") {
			t.Errorf("%s: DATABASE_DSN %q is not the compose PostgreSQL", name, cfg.DatabaseDSN)
		}
	}
	if p := c.Services["proxy"]; !slices.Contains(p.Ports, "3001:3001") || strings.Count(strings.Join(p.Command, " "), "--to gpt-load-") != 3 {
		t.Errorf("proxy: ports %v, command %v", p.Ports, p.Command)
	}
	if pg := c.Services["postgres"]; len(pg.Healthcheck.Test) == 0 || pg.Environment["POSTGRES_DB"] != "gpt_load" {
		t.Errorf("postgres: %+v", pg)
	}
	for _, v := range []string{"nats-1", "nats-2", "nats-3", "postgres", "gpt-load-1", "gpt-load-2", "gpt-load-3"} {
		if _, ok := c.Volumes[v]; !ok {
			t.Errorf("volume %s not declared", v)
		}
	}
}

// TestDockerfile lints docker/Dockerfile: a build stage and a runtime stage, the runtime
// image runs as a non-root user, keeps DATA_DIR on a volume, and checks its own health.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var froms []string
	var rest []string
	for _, l := range strings.Split(string(raw), "\n") {
		l = strings.TrimSpace(l)
		if f, ok := strings.CutPrefix(l, "FROM "); ok {
			froms = append(froms, f)
			rest = nil
			continue
		}
		rest = append(rest, l)
	}
	runtime := strings.Join(rest, "\n")
	if len(froms) < 2 || !strings.Contains(froms[0], " AS build") {
		t.Fatalf("stages %v: want a build stage and a runtime stage", froms)
	}
	last := froms[len(froms)-1]
	nonRoot := strings.HasSuffix(last, ":nonroot") || regexp.MustCompile(`(?m)^USER [1-9]|^USER [a-z]`).MatchString(runtime) && !strings.Contains(runtime, "USER root")
	if !nonRoot {
		t.Errorf("runtime stage %q runs as root", last)
	}
	for _, want := range []string{"COPY --from=build", "ENV DATA_DIR=/app/data", `VOLUME ["/app/data"]`, `CMD ["/usr/local/bin/gpt-load", "health"]`} {
		if !strings.Contains(runtime, want) {
			t.Errorf("runtime stage lacks %q", want)
		}
	}
}
