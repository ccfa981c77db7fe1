package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// loadCompose loads a Compose file as docker compose would (anchors, merge keys,
// ${VAR:?…} and ${VAR:-…} interpolation, the specification's schema and consistency
// checks), with env as the only environment: no Docker engine runs here.
func loadCompose(t *testing.T, path string, env map[string]string) (*types.Project, error) {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return loader.LoadWithContext(t.Context(), types.ConfigDetails{
		WorkingDir:  filepath.Dir(abs),
		ConfigFiles: []types.ConfigFile{{Filename: abs}},
		Environment: env,
	}, func(o *loader.Options) { o.SetProjectName("gpt-load", true) })
}

// nodeConfig checks that a service's environment is a valid configuration of this
// binary, and returns it.
func nodeConfig(t *testing.T, name string, s types.ServiceConfig) Config {
	t.Helper()
	env := map[string]string{"DATA_DIR": t.TempDir()}
	for k, v := range s.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	cfg, err := LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, "")
	if err != nil {
		t.Fatalf("%s: the environment is not a valid configuration: %v", name, err)
	}
	return cfg
}

// checkNodeService checks what every gpt-load service needs: the image built from
// docker/Dockerfile, DATA_DIR on a volume, the binary's own health check.
func checkNodeService(t *testing.T, name string, s types.ServiceConfig) {
	t.Helper()
	if s.Build == nil || s.Build.Dockerfile != "docker/Dockerfile" {
		t.Errorf("%s: build %+v, want docker/Dockerfile", name, s.Build)
	}
	if s.HealthCheck != nil && !slices.Equal(s.HealthCheck.Test, []string{"CMD", "/usr/local/bin/gpt-load", "health"}) {
		t.Errorf("%s: health check %v", name, s.HealthCheck.Test)
	}
	if len(s.Volumes) != 1 || s.Volumes[0].Target != "/app/data" {
		t.Errorf("%s: volumes %+v, want one on /app/data", name, s.Volumes)
	}
	if s.StopGracePeriod == nil || *s.StopGracePeriod < types.Duration(10e9) {
		t.Errorf("%s: stop_grace_period %v, want at least the node's 10 s shutdown budget", name, s.StopGracePeriod)
	}
}

// TestComposeSingleNode loads docker/compose.yml: one node on its embedded defaults,
// port 3001, data on the host, refusing to start without AUTH_KEY.
func TestComposeSingleNode(t *testing.T) {
	t.Parallel()
	if _, err := loadCompose(t, "../../docker/compose.yml", map[string]string{}); err == nil || !strings.Contains(err.Error(), "AUTH_KEY") {
		t.Fatalf("loaded without AUTH_KEY: %v; want an error naming it", err)
	}
	p, err := loadCompose(t, "../../docker/compose.yml", map[string]string{"AUTH_KEY": "compose-admin-key-0123456789"})
	if err != nil {
		t.Fatal(err)
	}
	s, ok := p.Services["gpt-load"]
	if !ok || len(p.Services) != 1 {
		t.Fatalf("services %v, want gpt-load alone", slices.Collect(func(yield func(string) bool) {
			for n := range p.Services {
				if !yield(n) {
					return
				}
			}
		}))
	}
	checkNodeService(t, "gpt-load", s)
	if len(s.Ports) != 1 || s.Ports[0].Target != 3001 || s.Ports[0].Published != "3001" {
		t.Errorf("ports %+v, want 3001:3001", s.Ports)
	}
	cfg := nodeConfig(t, "gpt-load", s)
	if !cfg.UsesEmbeddedNATS() || cfg.AuthKey != "compose-admin-key-0123456789" {
		t.Errorf("embedded NATS %v, AUTH_KEY %q", cfg.UsesEmbeddedNATS(), cfg.AuthKey)
	}
}

// TestComposeCluster loads docker/compose.cluster.yml: three NATS servers routed to each
// other with JetStream, PostgreSQL, three nodes whose environment is a valid
// configuration of this binary naming every NATS server, and a reverse proxy on 3001;
// every stateful service has a named volume and a health check.
func TestComposeCluster(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"AUTH_KEY": "compose-admin-key-0123456789", "POSTGRES_PASSWORD": "pw"}
	for _, missing := range []string{"AUTH_KEY", "POSTGRES_PASSWORD"} {
		env := map[string]string{}
		for k, v := range vars {
			if k != missing {
				env[k] = v
			}
		}
		if _, err := loadCompose(t, "../../docker/compose.cluster.yml", env); err == nil || !strings.Contains(err.Error(), missing) {
			t.Fatalf("loaded without %s: %v; want an error naming it", missing, err)
		}
	}
	p, err := loadCompose(t, "../../docker/compose.cluster.yml", vars)
	if err != nil {
		t.Fatal(err)
	}
	nats := []string{"nats-1", "nats-2", "nats-3"}
	nodes := []string{"gpt-load-1", "gpt-load-2", "gpt-load-3"}
	for _, name := range append(append(slices.Clone(nats), nodes...), "postgres", "proxy") {
		if _, ok := p.Services[name]; !ok {
			t.Fatalf("no service %s", name)
		}
	}
	for _, name := range nats {
		s := p.Services[name]
		cmd := strings.Join(s.Command, " ")
		for _, want := range []string{"--jetstream", "--cluster_name gpt-load", "--name " + name,
			"--routes nats://nats-1:6222,nats://nats-2:6222,nats://nats-3:6222"} {
			if !strings.Contains(cmd, want) {
				t.Errorf("%s: command %q lacks %q", name, cmd, want)
			}
		}
		if s.HealthCheck == nil || len(s.HealthCheck.Test) == 0 || len(s.Volumes) != 1 ||
			s.Volumes[0].Type != types.VolumeTypeVolume || s.Volumes[0].Target != "/data" {
			t.Errorf("%s: health check %+v, volumes %+v", name, s.HealthCheck, s.Volumes)
		}
	}
	seen := map[string]bool{}
	for _, name := range nodes {
		s := p.Services[name]
		checkNodeService(t, name, s)
		if s.HealthCheck == nil {
			t.Errorf("%s: no health check", name)
		}
		if d, ok := s.DependsOn["postgres"]; !ok || d.Condition != types.ServiceConditionHealthy {
			t.Errorf("%s: depends on postgres %+v, want service_healthy", name, d)
		}
		cfg := nodeConfig(t, name, s)
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
	px := p.Services["proxy"]
	if len(px.Ports) != 1 || px.Ports[0].Target != 3001 || px.Ports[0].Published != "3001" ||
		strings.Count(strings.Join(px.Command, " "), "--to gpt-load-") != 3 {
		t.Errorf("proxy: ports %+v, command %v", px.Ports, px.Command)
	}
	pg := p.Services["postgres"]
	if pg.HealthCheck == nil || len(pg.HealthCheck.Test) == 0 || pg.Environment["POSTGRES_DB"] == nil || *pg.Environment["POSTGRES_DB"] != "gpt_load" {
		t.Errorf("postgres: health check %+v, environment %v", pg.HealthCheck, pg.Environment)
	}
	for _, v := range []string{"nats-1", "nats-2", "nats-3", "postgres", "gpt-load-1", "gpt-load-2", "gpt-load-3"} {
		if _, ok := p.Volumes[v]; !ok {
			t.Errorf("volume %s not declared", v)
		}
	}
}

// TestDockerfile lints docker/Dockerfile: a stage that builds the dashboard, a Go build
// stage that embeds it, and a runtime stage that runs as a non-root user, keeps DATA_DIR
// on a volume, and checks its own health.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var froms []string
	stages := map[string]string{} // stage name → its instructions
	var cur []string
	flush := func() {
		if len(froms) > 0 {
			stages[froms[len(froms)-1]] = strings.Join(cur, "\n")
		}
		cur = nil
	}
	for _, l := range strings.Split(string(raw), "\n") {
		l = strings.TrimSpace(l)
		if f, ok := strings.CutPrefix(l, "FROM "); ok {
			flush()
			froms = append(froms, f)
			continue
		}
		cur = append(cur, l)
	}
	flush()
	if len(froms) != 3 || !strings.HasSuffix(froms[0], " AS spa") || !strings.HasSuffix(froms[1], " AS build") {
		t.Fatalf("stages %v: want the dashboard's (AS spa), the Go build (AS build) and the runtime", froms)
	}
	if spa := stages[froms[0]]; !strings.Contains(spa, "npm ci") || !strings.Contains(spa, "vite build") {
		t.Errorf("the spa stage does not build the dashboard:\n%s", spa)
	}
	build := stages[froms[1]]
	embed, gobuild := strings.Index(build, "COPY --from=spa /src/frontend/dist ./frontend/dist"), strings.Index(build, "go build")
	if embed < 0 || gobuild < embed {
		t.Errorf("the build stage does not put the dashboard in frontend/dist before go build:\n%s", build)
	}
	last := froms[len(froms)-1]
	runtime := stages[last]
	nonRoot := strings.HasSuffix(last, ":nonroot") || regexp.MustCompile(`(?m)^USER [1-9]|^USER [a-z]`).MatchString(runtime) && !strings.Contains(runtime, "USER root")
	if !nonRoot {
		t.Errorf("runtime stage %q runs as root", last)
	}
	for _, want := range []string{"COPY --from=build", "ENV DATA_DIR=/app/data", `VOLUME ["/app/data"]`, `CMD ["/usr/local/bin/gpt-load", "health"]`} {
		if !strings.Contains(runtime, want) {
			t.Errorf("runtime stage lacks %q", want)
		}
	}
	ignore, err := os.ReadFile("../../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"frontend/node_modules", "data"} {
		if !slices.Contains(strings.Fields(string(ignore)), want) {
			t.Errorf(".dockerignore lacks %s: the build context would carry it", want)
		}
	}
}
