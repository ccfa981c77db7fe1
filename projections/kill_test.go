package projections_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/events/embedded"
	"gpt-load/projections"
)

const killChildEnv = "GL_TEST_KILL_CHILD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(killChildEnv); dir != "" {
		os.Exit(killChild(dir))
	}
	os.Exit(m.Run())
}

// killChild is the process TestSIGKILLAfterCommand kills: it runs commands on an embedded
// server in dir, says which have returned, and waits to be killed.
func killChild(dir string) int {
	fail := func(err error) int { fmt.Println("ERROR", err); return 1 }
	srv, err := embedded.Start(embedded.Config{Name: "child", DataDir: dir}, zerolog.Nop())
	if err != nil {
		return fail(err)
	}
	nc, err := srv.Connect()
	if err != nil {
		return fail(err)
	}
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	st, err := events.OpenStore(ctx, js, events.StoreConfig{Node: "child"}, zerolog.Nop())
	if err != nil {
		return fail(err)
	}
	run := projections.New(st, events.NewSnapshots(filepath.Join(dir, "snapshots"), nil),
		projections.Config{Seed: testSeed(), SnapshotEvery: 1, SnapshotInterval: time.Nanosecond}, zerolog.Nop())
	go run.Run(ctx)
	for !run.CaughtUp() {
		time.Sleep(time.Millisecond)
	}
	cmd := events.NewCommands(st, run)
	for i := 0; ; i++ {
		g, err := cmd.CreateGroup(ctx, events.ActorAdmin, standardGroup(fmt.Sprintf("g%d", i)))
		if err != nil {
			return fail(err)
		}
		keys := make([]string, 1500)
		for j := range keys {
			keys[j] = fmt.Sprintf("sk-%d-%d", i, j)
		}
		if _, err := cmd.AddKeys(ctx, events.ActorAdmin, g.ID, keys, nil); err != nil {
			return fail(err)
		}
		// Everything above has returned: it must survive what comes next.
		fmt.Printf("COMMITTED %d\n", i)
	}
}

// TestSIGKILLAfterCommand kills a node with SIGKILL right after commands returned, while it
// keeps writing events and snapshots, and checks that a restart on the same data
// directory has every command that returned.
func TestSIGKILLAfterCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	t.Parallel()
	dir := t.TempDir()
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), killChildEnv+"="+dir)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	committed := -1
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "ERROR") {
			t.Fatalf("child: %s", line)
		}
		if _, err := fmt.Sscanf(line, "COMMITTED %d", &committed); err == nil && committed >= 2 {
			break
		}
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	if committed < 2 {
		t.Fatalf("child committed %d rounds before dying", committed)
	}

	srv, err := embedded.Start(embedded.Config{Name: "after", DataDir: dir}, zerolog.Nop())
	if err != nil {
		t.Fatalf("restart on the killed node's data: %v", err)
	}
	t.Cleanup(func() { srv.Close(context.Background()) })
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	n := startNode(t, js, nodeOpts{snapDir: filepath.Join(dir, "snapshots")})
	for i := 0; i <= committed; i++ {
		g, ok := n.groupByName(fmt.Sprintf("g%d", i))
		if !ok {
			t.Fatalf("group g%d was committed before the kill and is gone", i)
		}
		var keys int
		n.proj.Read(func(s *domain.State) { keys = s.Keys(g.ID).Len() })
		if keys != 1500 {
			t.Fatalf("group g%d has %d keys after the kill, want 1500", i, keys)
		}
	}
	// And the restarted node agrees with a full replay of what is on disk.
	if string(startNode(t, js, nodeOpts{}).encoded(t)) != string(n.encoded(t)) {
		t.Fatal("restart from the snapshot differs from a full replay")
	}
}
