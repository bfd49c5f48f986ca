package baotest

import (
	"net"
	"sync"
	"testing"
)

// SilentServer accepts connections on loopback and never answers, as an OpenBao server whose
// process hangs or whose node stopped: every call to it waits for its timeout. It returns its
// address as an https URL and how many connections it accepted; it is closed when the test
// ends.
func SilentServer(t testing.TB) (addr string, accepted func() int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return "https://" + l.Addr().String(), func() int { mu.Lock(); defer mu.Unlock(); return len(conns) }
}
