// Command probeapp is a small stand-in for container images in the node
// agent's tests.
//
//	probeapp serve [-port 8080] [-term-delay 0s]   HTTP introspection server
//	probeapp exit <code>                           print a line and exit with code
//	probeapp sleep                                 sleep until signalled
//	probeapp exists <path>                         exit 0 if path exists (exec probes)
//	probeapp touch <path>                          create a file (preStop hooks)
//	probeapp get <url>                             exit 0 if the URL answers 2xx
//	probeapp ls <dir> <out>                        write the sorted names in dir to out
//	probeapp cp <src> <dst>                        copy a file
//
// The server's endpoints: /healthz (500 once /sethealth?ok=0), /ready
// (toggled by /setready?ok=0|1), /env (JSON), /file?path=, /write?path=,
// /id (uid, gid, groups, hostname, cwd), /resolve?name=.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probeapp serve|exit|sleep|exists|touch")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		serve(os.Args[2:])
	case "exit":
		code, _ := strconv.Atoi(os.Args[2])
		fmt.Printf("exiting with %d\n", code)
		os.Exit(code)
	case "sleep":
		fmt.Println("sleeping")
		waitTerm(0)
	case "exists":
		if _, err := os.Stat(os.Args[2]); err != nil {
			os.Exit(1)
		}
	case "get":
		resp, err := http.Get(os.Args[2])
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		resp.Body.Close()
		fmt.Println(resp.Status)
		if resp.StatusCode >= 300 {
			os.Exit(1)
		}
	case "ls":
		entries, err := os.ReadDir(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if err := os.WriteFile(os.Args[3], []byte(strings.Join(names, "\n")), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "cp":
		data, err := os.ReadFile(os.Args[2])
		if err == nil {
			err = os.WriteFile(os.Args[3], data, 0o755)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "touch":
		if err := os.WriteFile(os.Args[2], []byte(time.Now().Format(time.RFC3339Nano)), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	default:
		fmt.Fprintf(os.Stderr, "unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
}

func waitTerm(delay time.Duration) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	sig := <-ch
	fmt.Printf("got %v, exiting in %s\n", sig, delay)
	time.Sleep(delay)
	fmt.Println("clean exit")
	os.Exit(0)
}

func serve(args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	port := fs.Int("port", 8080, "listen port")
	termDelay := fs.Duration("term-delay", 0, "delay between SIGTERM and exit")
	useTLS := fs.Bool("tls", false, "serve HTTPS with a self-signed certificate")
	_ = fs.Parse(args)
	var healthy, ready atomic.Bool
	healthy.Store(true)
	ready.Store(true)
	mux := http.NewServeMux()
	status := func(w http.ResponseWriter, ok bool) {
		if !ok {
			w.WriteHeader(http.StatusInternalServerError)
		}
		fmt.Fprintln(w, ok)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { status(w, healthy.Load()) })
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) { status(w, ready.Load()) })
	mux.HandleFunc("/sethealth", func(w http.ResponseWriter, r *http.Request) { healthy.Store(r.URL.Query().Get("ok") == "1") })
	mux.HandleFunc("/setready", func(w http.ResponseWriter, r *http.Request) { ready.Store(r.URL.Query().Get("ok") == "1") })
	mux.HandleFunc("/env", func(w http.ResponseWriter, _ *http.Request) {
		env := map[string]string{}
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		_ = json.NewEncoder(w).Encode(env)
	})
	mux.HandleFunc("/file", func(w http.ResponseWriter, r *http.Request) {
		data, err := os.ReadFile(r.URL.Query().Get("path"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		_, _ = w.Write(data)
	})
	mux.HandleFunc("/write", func(w http.ResponseWriter, r *http.Request) {
		if err := os.WriteFile(r.URL.Query().Get("path"), []byte(r.URL.Query().Get("data")), 0o644); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/id", func(w http.ResponseWriter, _ *http.Request) {
		host, _ := os.Hostname()
		cwd, _ := os.Getwd()
		groups, _ := os.Getgroups()
		_ = json.NewEncoder(w).Encode(map[string]any{"uid": os.Getuid(), "gid": os.Getgid(), "groups": groups, "hostname": host, "cwd": cwd, "args": os.Args})
	})
	mux.HandleFunc("/resolve", func(w http.ResponseWriter, r *http.Request) {
		addrs, err := net.LookupHost(r.URL.Query().Get("name"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode(addrs)
	})
	// /apicall?path=/api calls the API server as in-cluster clients do:
	// KUBERNETES_SERVICE_HOST/PORT, the mounted token and CA.
	mux.HandleFunc("/apicall", func(w http.ResponseWriter, r *http.Request) {
		const sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
		token, err := os.ReadFile(sa + "token")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		ca, err := os.ReadFile(sa + "ca.crt")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
		host := net.JoinHostPort(os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT"))
		req, _ := http.NewRequest(http.MethodGet, "https://"+host+r.URL.Query().Get("path"), nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	})
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", *port))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *useTLS {
		cert, err := selfSigned()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	go func() { _ = http.Serve(ln, mux) }()
	waitTerm(*termDelay)
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "probeapp"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
