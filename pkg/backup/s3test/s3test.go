// Package s3test runs a real S3-compatible server for tests: SeaweedFS's `weed server -s3`
// (built by `make seaweedfs`), bound to loopback, with TLS and access keys.
package s3test

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/openbao-operator/openbao-operator/pkg/backup"
	"github.com/openbao-operator/openbao-operator/pkg/pki"
)

// Identities the server accepts.
const (
	AccessKey         = "backupwriter"
	SecretKey         = "backupwriter-secret-key-0123456789"
	ReadOnlyAccessKey = "backupreader"
	ReadOnlySecretKey = "backupreader-secret-key-0123456789"
	Region            = "us-east-1"
)

// Server is a running weed server with its S3 gateway on https://127.0.0.1:<port>.
type Server struct {
	Endpoint string
	CAPEM    []byte
	Dir      string
	LogPath  string
}

// Binary is $SEAWEEDFS_BIN, else the one `make seaweedfs` built under .cache/seaweedfs of the
// repository. The test fails when it is missing.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("SEAWEEDFS_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("SEAWEEDFS_BIN=%s: %v (run `make seaweedfs`)", p, err)
		}
		return p
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "PROJECT")); err == nil {
			break // the repository's root holds the Operator SDK's PROJECT file
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("cannot find the repository root to look for .cache/seaweedfs; set SEAWEEDFS_BIN")
		}
		dir = parent
	}
	matches, _ := filepath.Glob(filepath.Join(dir, ".cache", "seaweedfs", "*", "weed"))
	if len(matches) == 0 {
		t.Fatalf("SeaweedFS's weed is not built under %s/.cache/seaweedfs: run `make seaweedfs` (about 7 minutes) or set SEAWEEDFS_BIN", dir)
	}
	return matches[len(matches)-1]
}

// Start runs a server for the test and stops it at the end.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	ca, err := pki.NewCA("s3test", time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.IssueServerCert(ca, pki.ServerCertRequest{
		CommonName: "127.0.0.1", DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, Validity: 24 * time.Hour,
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certFile, keyFile := write("s3.crt", cert.CertPEM), write("s3.key", cert.KeyPEM)
	ids := map[string]any{"identities": []map[string]any{
		{"name": "writer", "credentials": []map[string]string{{"accessKey": AccessKey, "secretKey": SecretKey}},
			"actions": []string{"Admin", "Read", "Write", "List", "Tagging"}},
		{"name": "reader", "credentials": []map[string]string{{"accessKey": ReadOnlyAccessKey, "secretKey": ReadOnlySecretKey}},
			"actions": []string{"Read", "List"}},
	}}
	idsJSON, _ := json.Marshal(ids)
	idsFile := write("identities.json", idsJSON)
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 9)
	s3Port := ports[0]
	args := []string{"server",
		"-dir=" + data, "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-master.port=" + strconv.Itoa(ports[1]), "-master.port.grpc=" + strconv.Itoa(ports[2]),
		"-volume.port=" + strconv.Itoa(ports[3]), "-volume.port.grpc=" + strconv.Itoa(ports[4]),
		"-filer.port=" + strconv.Itoa(ports[5]), "-filer.port.grpc=" + strconv.Itoa(ports[6]),
		"-master.volumeSizeLimitMB=256",
		"-s3", "-s3.port=" + strconv.Itoa(s3Port), "-s3.port.grpc=" + strconv.Itoa(ports[7]),
		"-s3.port.iceberg=0", "-s3.port.lance=0",
		"-s3.cert.file=" + certFile, "-s3.key.file=" + keyFile,
		"-s3.config=" + idsFile,
	}
	s := &Server{Endpoint: "https://127.0.0.1:" + strconv.Itoa(s3Port), CAPEM: ca.CertPEM, Dir: dir, LogPath: filepath.Join(dir, "weed.log")}
	logf, err := os.Create(s.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		_ = logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(s.LogPath)
			lines := strings.Split(string(b), "\n")
			t.Logf("--- weed log (last 40 lines)\n%s", strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	})
	// The gateway serves once the writer can list the buckets.
	deadline := time.Now().Add(90 * time.Second)
	cl := s.client(t, AccessKey, SecretKey)
	for {
		select {
		case <-exited:
			b, _ := os.ReadFile(s.LogPath)
			t.Fatalf("weed exited while starting:\n%s", b)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := cl.Client().ListBuckets(ctx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the S3 gateway of weed did not serve within 90s: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	return s
}

// client is a backup.S3 for bucket "probe", used for its minio client only.
func (s *Server) client(t testing.TB, access, secret string) *backup.S3 {
	t.Helper()
	b, err := backup.NewS3(backup.S3Config{Endpoint: s.Endpoint, Bucket: "probe", Region: Region, PathStyle: true, AccessKeyID: access, SecretAccessKey: secret, CAPEM: s.CAPEM})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Target is a backup target in bucket under prefix, with the writer's keys.
func (s *Server) Target(t testing.TB, bucket, prefix string) *backup.S3 {
	t.Helper()
	b, err := backup.NewS3(backup.S3Config{Endpoint: s.Endpoint, Bucket: bucket, Prefix: prefix, Region: Region, PathStyle: true, AccessKeyID: AccessKey, SecretAccessKey: SecretKey, CAPEM: s.CAPEM})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// MakeBucket creates a bucket.
func (s *Server) MakeBucket(t testing.TB, bucket string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.client(t, AccessKey, SecretKey).Client().MakeBucket(ctx, bucket, minio.MakeBucketOptions{Region: Region}); err != nil {
		t.Fatalf("make bucket %s: %v", bucket, err)
	}
}

// freePorts finds n free loopback ports.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return out
}
