// Package loadclient writes and reads secrets the way an application does while an
// OpenBao cluster is being upgraded: it resolves the client Service through its
// EndpointSlices (as kube-proxy would), logs in with its service account's token, retries
// with backoff on errors, and records every request. Afterwards, Verify reads every
// acknowledged write back from every server: an upgrade must not lose one.
package loadclient

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/openbao/openbao/api/v2"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Config says where and how to write.
type Config struct {
	Kube      kubernetes.Interface
	Namespace string
	// Service is the client Service; its DNS name is the TLS server name.
	Service string
	CAPEM   []byte
	// Login returns a fresh JWT (e.g. a TokenRequest of the application's service account).
	Login func(ctx context.Context) (jwt string, err error)
	// Role and Mount of the JWT auth method.
	Role, Mount string
	// KeyPrefix under which secrets are written, e.g. "secret/data/e2e/run1/".
	KeyPrefix string
	// Rate of writes per second; every fifth operation is a read of an acknowledged key.
	Rate float64
	// RequestTimeout bounds each request.
	RequestTimeout time.Duration
}

// Request is one recorded request.
type Request struct {
	Start    time.Time
	Duration time.Duration
	Write    bool
	Key      string
	Endpoint string
	Err      string
}

// Client is a running load.
type Client struct {
	cfg    Config
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	requests  []Request
	acked     map[string]string // key -> value
	writes    []Write           // acknowledged writes, in the order of their acknowledgement
	token     string
	endpoints []string
	resolved  time.Time
	// staleReads counts reads that first returned an older value than acknowledged.
	staleReads int
}

// Start begins writing until Stop.
func Start(ctx context.Context, cfg Config) *Client {
	if cfg.Mount == "" {
		cfg.Mount = "jwt"
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	ctx, cancel := context.WithCancel(ctx)
	c := &Client{cfg: cfg, cancel: cancel, done: make(chan struct{}), acked: map[string]string{}}
	go c.loop(ctx)
	return c
}

// Stop ends the load and waits for the last request.
func (c *Client) Stop() {
	c.cancel()
	<-c.done
}

func (c *Client) loop(ctx context.Context) {
	defer close(c.done)
	interval := time.Duration(float64(time.Second) / c.cfg.Rate)
	next := time.Now()
	for n := 0; ; n++ {
		if ctx.Err() != nil {
			return
		}
		if n%5 == 4 {
			c.readOne(ctx)
		} else {
			c.writeOne(ctx, n)
		}
		next = next.Add(interval)
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		} else {
			next = time.Now()
		}
	}
}

// writeOne writes key n, retrying with backoff until it is acknowledged or the load stops.
func (c *Client) writeOne(ctx context.Context, n int) {
	key := c.cfg.KeyPrefix + "k" + strconv.Itoa(n)
	value := fmt.Sprintf("v%d-%d", n, rand.Int64())
	first := time.Now()
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := c.do(ctx, true, key, func(cl *api.Client, rctx context.Context) error {
			_, err := cl.Logical().WriteWithContext(rctx, key, map[string]any{"data": map[string]any{"value": value}})
			return err
		})
		if err == nil {
			c.mu.Lock()
			c.acked[key] = value
			c.writes = append(c.writes, Write{Key: key, Value: value, Start: first, Acknowledged: time.Now()})
			c.mu.Unlock()
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Second)
	}
}

func (c *Client) readOne(ctx context.Context) {
	c.mu.Lock()
	var key, want string
	for k, v := range c.acked { // map order is random enough
		key, want = k, v
		break
	}
	c.mu.Unlock()
	if key == "" {
		return
	}
	_ = c.do(ctx, false, key, func(cl *api.Client, rctx context.Context) error {
		s, err := cl.Logical().ReadWithContext(rctx, key)
		if err != nil {
			return err
		}
		if valueOf(s) == want {
			return nil
		}
		// OpenBao's standbys serve reads from their own copy of the Raft log, which may
		// lag the active node a little (eventual consistency): a stale read is counted,
		// and the same server is asked again until it has applied the write.
		c.mu.Lock()
		c.staleReads++
		c.mu.Unlock()
		for {
			select {
			case <-rctx.Done():
				return fmt.Errorf("read %s: got %q, want %q, still after %s", key, valueOf(s), want, c.cfg.RequestTimeout)
			case <-time.After(100 * time.Millisecond):
			}
			if s, err = cl.Logical().ReadWithContext(rctx, key); err != nil {
				return err
			}
			if valueOf(s) == want {
				return nil
			}
		}
	})
}

func valueOf(s *api.Secret) string {
	if s == nil || s.Data == nil {
		return ""
	}
	data, _ := s.Data["data"].(map[string]any)
	v, _ := data["value"].(string)
	return v
}

// do runs one request against a ready endpoint and records it.
func (c *Client) do(ctx context.Context, write bool, key string, f func(*api.Client, context.Context) error) error {
	start := time.Now()
	endpoint, err := c.endpoint(ctx)
	var cl *api.Client
	if err == nil {
		cl, err = c.client(ctx, endpoint)
	}
	if err == nil {
		rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
		err = f(cl, rctx)
		cancel()
		var re *api.ResponseError
		if errors.As(err, &re) && re.StatusCode == 403 {
			c.mu.Lock()
			c.token = "" // log in again
			c.mu.Unlock()
		}
		if err != nil {
			c.mu.Lock()
			c.resolved = time.Time{} // resolve again
			c.mu.Unlock()
		}
	}
	if ctx.Err() != nil && err != nil {
		return err // stopping: not a request the application saw fail
	}
	r := Request{Start: start, Duration: time.Since(start), Write: write, Key: key, Endpoint: endpoint}
	if err != nil {
		r.Err = err.Error()
	}
	c.mu.Lock()
	c.requests = append(c.requests, r)
	c.mu.Unlock()
	return err
}

// endpoint picks a ready endpoint of the client Service, as kube-proxy would.
func (c *Client) endpoint(ctx context.Context) (string, error) {
	c.mu.Lock()
	fresh := time.Since(c.resolved) < 500*time.Millisecond && len(c.endpoints) > 0
	eps := c.endpoints
	c.mu.Unlock()
	if !fresh {
		slices, err := c.cfg.Kube.DiscoveryV1().EndpointSlices(c.cfg.Namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + c.cfg.Service})
		if err != nil {
			return "", fmt.Errorf("resolve service %s: %w", c.cfg.Service, err)
		}
		eps = nil
		for _, s := range slices.Items {
			var port int32 = 8200
			for _, p := range s.Ports {
				if p.Port != nil {
					port = *p.Port
				}
			}
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready && len(e.Addresses) > 0 {
					eps = append(eps, net.JoinHostPort(e.Addresses[0], strconv.Itoa(int(port))))
				}
			}
		}
		c.mu.Lock()
		c.endpoints, c.resolved = eps, time.Now()
		c.mu.Unlock()
	}
	if len(eps) == 0 {
		return "", fmt.Errorf("service %s has no ready endpoint", c.cfg.Service)
	}
	return eps[rand.IntN(len(eps))], nil
}

func (c *Client) client(ctx context.Context, endpoint string) (*api.Client, error) {
	cl, err := NewAPIClient("https://"+endpoint, c.cfg.CAPEM, c.cfg.Service+"."+c.cfg.Namespace+".svc", c.cfg.RequestTimeout)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	token := c.token
	c.mu.Unlock()
	if token == "" {
		jwt, err := c.cfg.Login(ctx)
		if err != nil {
			return nil, fmt.Errorf("get a service-account token: %w", err)
		}
		rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
		defer cancel()
		s, err := cl.Logical().WriteWithContext(rctx, "auth/"+c.cfg.Mount+"/login", map[string]any{"role": c.cfg.Role, "jwt": jwt})
		if err != nil {
			return nil, fmt.Errorf("log in: %w", err)
		}
		if s == nil || s.Auth == nil {
			return nil, errors.New("log in: no token returned")
		}
		token = s.Auth.ClientToken
		c.mu.Lock()
		c.token = token
		c.mu.Unlock()
	}
	cl.SetToken(token)
	return cl, nil
}

// NewAPIClient is an OpenBao API client for address that verifies serverName with caPEM
// and does not retry on its own (the load client counts every failure).
func NewAPIClient(address string, caPEM []byte, serverName string, timeout time.Duration) (*api.Client, error) {
	cfg := api.DefaultConfig()
	cfg.Address = address
	cfg.MaxRetries = 0
	cfg.Timeout = timeout
	if err := cfg.ConfigureTLS(&api.TLSConfig{CACertBytes: caPEM, TLSServerName: serverName}); err != nil {
		return nil, err
	}
	cl, err := api.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	cl.ClearToken()
	return cl, nil
}

// Report summarizes a run.
type Report struct {
	Requests       int
	Writes         int
	FailedRequests int
	Acknowledged   int
	// StaleReads are reads that first saw an older value than the acknowledged one (a
	// standby that had not yet applied the write) and then the acknowledged one.
	StaleReads int
	// LongestWriteGap is the longest time between two successful writes.
	LongestWriteGap time.Duration
	Duration        time.Duration
	// FirstErrors are a few of the errors seen, for people.
	FirstErrors []string
}

// Report returns what happened so far.
func (c *Client) Report() Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := Report{Requests: len(c.requests), Acknowledged: len(c.acked), StaleReads: c.staleReads}
	var lastOK time.Time
	var first time.Time
	for _, q := range c.requests {
		if first.IsZero() {
			first = q.Start
		}
		if q.Write {
			r.Writes++
		}
		if q.Err != "" {
			r.FailedRequests++
			if len(r.FirstErrors) < 5 {
				r.FirstErrors = append(r.FirstErrors, q.Err)
			}
			continue
		}
		if q.Write {
			end := q.Start.Add(q.Duration)
			if !lastOK.IsZero() && end.Sub(lastOK) > r.LongestWriteGap {
				r.LongestWriteGap = end.Sub(lastOK)
			}
			lastOK = end
		}
	}
	if len(c.requests) > 0 {
		last := c.requests[len(c.requests)-1]
		r.Duration = last.Start.Add(last.Duration).Sub(first)
	}
	return r
}

// Write is one acknowledged write.
type Write struct {
	Key, Value string
	// Start is when the write was first sent (a retry keeps it), Acknowledged when the
	// server acknowledged it.
	Start, Acknowledged time.Time
}

// Writes returns every acknowledged write, in the order of acknowledgement.
func (c *Client) Writes() []Write {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Write(nil), c.writes...)
}

// Requests returns a copy of every recorded request.
func (c *Client) Requests() []Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Request(nil), c.requests...)
}

// Token is the application token the load logged in with ("" before the first login).
func (c *Client) Token() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token
}

// Verify reads every acknowledged write through cl and returns the keys that are missing
// or hold another value (see VerifyValues).
func (c *Client) Verify(ctx context.Context, cl *api.Client) ([]string, error) {
	c.mu.Lock()
	want := maps.Clone(c.acked)
	c.mu.Unlock()
	return VerifyValues(ctx, cl, want)
}

// VerifyValues reads each key of want through cl and returns the keys that are missing or
// hold another value than want's. A server that is a standby may lag the active node a
// little, so a key is reported only if it is still missing after a few seconds.
func VerifyValues(ctx context.Context, cl *api.Client, want map[string]string) ([]string, error) {
	pending := maps.Clone(want)
	for attempt := 0; ; attempt++ {
		for key, value := range pending {
			s, err := cl.Logical().ReadWithContext(ctx, key)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", key, err)
			}
			if valueOf(s) == value {
				delete(pending, key)
			}
		}
		if len(pending) == 0 || attempt == 10 {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	lost := make([]string, 0, len(pending))
	for key := range pending {
		lost = append(lost, key)
	}
	return lost, nil
}
