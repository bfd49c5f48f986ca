package baotest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/pki"
)

// RestoreOnScratchServer restores a Raft snapshot with `bao operator raft snapshot restore`
// on a new single server that shares only the source cluster's static seal key (sealKeyFile,
// sealKeyID), and returns an unauthenticated client of the restored, active server. The
// scratch server is initialized with `bao operator init`; its root token never leaves this
// function, and the server is stopped when the test ends.
func RestoreOnScratchServer(t testing.TB, snap, sealKeyFile, sealKeyID string) openbao.Client {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	apiPort, clusterPort := freePort(t), freePort(t)
	addr := "http://127.0.0.1:" + strconv.Itoa(apiPort)
	config := fmt.Sprintf(`ui = false
api_addr = %q
cluster_addr = "https://127.0.0.1:%d"
storage "raft" {
  path    = %q
  node_id = "scratch-0"
}
listener "tcp" {
  address         = "127.0.0.1:%d"
  cluster_address = "127.0.0.1:%d"
  tls_disable     = true
}
seal "static" {
  current_key_id = %q
  current_key    = "file://%s"
}
`, addr, clusterPort, filepath.Join(dir, "data"), apiPort, clusterPort, sealKeyID, sealKeyFile)
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "scratch.hcl")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	server := exec.Command(bin, "server", "-config="+cfgPath)
	server.Env = scratchEnv(addr, "")
	server.Stdout, server.Stderr = logFile, logFile
	server.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := server.Start(); err != nil {
		t.Fatalf("start the scratch server: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = server.Wait(); _ = logFile.Close(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-server.Process.Pid, syscall.SIGKILL)
		<-exited
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- scratch server log\n%s", b)
		}
	})

	// The scratch server listens on plain HTTP; the client still wants a CA.
	ca, err := pki.NewCA("scratch", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := openbao.New(openbao.Config{Address: addr, CACertPEM: ca.CertPEM, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	waitHealth := func(what string, ok func(*openbao.HealthStatus) bool) {
		Eventually(t, 2*time.Minute, "scratch server "+what, func(ctx context.Context) error {
			h, err := cl.Health(ctx)
			if err != nil {
				return err
			}
			if !ok(h) {
				return fmt.Errorf("health %d", h.StatusCode)
			}
			return nil
		})
	}
	waitHealth("answers", func(h *openbao.HealthStatus) bool { return true })
	var init struct {
		RootToken string `json:"root_token"`
	}
	if err := json.Unmarshal(runBao(t, bin, addr, "", "operator", "init", "-format=json"), &init); err != nil || init.RootToken == "" {
		t.Fatalf("operator init of the scratch server: no root token in the answer (%v)", err)
	}
	waitHealth("active after init", (*openbao.HealthStatus).Active)
	// -force: the snapshot comes from another cluster (another root key); the shared static
	// seal key lets the scratch server unseal the restored data.
	runBao(t, bin, addr, init.RootToken, "operator", "raft", "snapshot", "restore", "-force", snap)
	waitHealth("active after restore", (*openbao.HealthStatus).Active)
	return cl
}

// runBao runs the CLI against addr and returns its standard output.
func runBao(t testing.TB, bin, addr, token string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = scratchEnv(addr, token)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bao %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

func scratchEnv(addr, token string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(), "BAO_ADDR=" + addr}
	if token != "" {
		env = append(env, "BAO_TOKEN="+token)
	}
	return env
}
