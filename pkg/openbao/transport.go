package openbao

import (
	"crypto/sha256"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/openbao/openbao/api/v2"
)

// The operator creates a client for every pass over a cluster and every few seconds for the
// leader watch. A client with a transport of its own would open a TLS connection each time
// and leave it idle in that transport's pool until the idle timeout: with twenty clusters,
// thousands of idle connections and their buffers in the operator's memory, and a handshake
// per call on the servers. Clients of the same server identity (CA and TLS server name)
// share one transport instead, so a connection is reused from one pass to the next.
var transports = &transportCache{entries: map[transportKey]*transportEntry{}}

// unusedTransport is how long a transport nobody asked for is kept (the cluster was
// deleted, the pod renamed, or the CA rotated).
const unusedTransport = 10 * time.Minute

// idleConnTimeout closes a shared connection nobody used for this long.
const idleConnTimeout = 90 * time.Second

type transportKey struct {
	ca         [sha256.Size]byte
	serverName string
}

type transportEntry struct {
	transport *http.Transport
	lastUsed  time.Time
}

type transportCache struct {
	mu        sync.Mutex
	entries   map[transportKey]*transportEntry
	lastSweep time.Time
}

// get returns the shared transport for a CA and a TLS server name, creating it when needed.
func (tc *transportCache) get(caPEM []byte, serverName string) (*http.Transport, error) {
	key := transportKey{ca: sha256.Sum256(caPEM), serverName: serverName}
	now := time.Now()
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if now.Sub(tc.lastSweep) > unusedTransport {
		tc.lastSweep = now
		for k, e := range tc.entries {
			if now.Sub(e.lastUsed) > unusedTransport {
				e.transport.CloseIdleConnections()
				delete(tc.entries, k)
			}
		}
	}
	if e, ok := tc.entries[key]; ok {
		e.lastUsed = now
		return e.transport, nil
	}
	c := api.DefaultConfig()
	if c.Error != nil {
		return nil, c.Error
	}
	if err := c.ConfigureTLS(&api.TLSConfig{CACertBytes: caPEM, TLSServerName: serverName}); err != nil {
		return nil, err
	}
	t, ok := c.HttpClient.Transport.(*http.Transport)
	if !ok {
		return nil, errTransportType
	}
	t.IdleConnTimeout = idleConnTimeout
	tc.entries[key] = &transportEntry{transport: t, lastUsed: now}
	return t, nil
}

// size is the number of shared transports (for tests).
func (tc *transportCache) size() int {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return len(tc.entries)
}

var errTransportType = errors.New("the OpenBao API library's default transport is not an *http.Transport")
