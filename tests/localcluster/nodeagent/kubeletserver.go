package nodeagent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
)

// DefaultKubeletPort is the port of the kubelet API, as on every node.
const DefaultKubeletPort = 10250

// The kubelet API, as far as the agent serves it: container logs, for
// `kubectl logs` (the API server's pods/log subresource connects to
// https://<node InternalIP>:<daemonEndpoints.kubeletEndpoint.Port>/containerLogs/...).
//
// As a kubelet with serverTLSBootstrap, authentication.x509.clientCAFile,
// authentication.webhook and authorization.mode=Webhook, anonymous off:
//   - its serving certificate comes from a CertificateSigningRequest for the
//     signer kubernetes.io/kubelet-serving (CN system:node:<name>, group
//     system:nodes, the node's address), which the agent approves with its
//     own credentials and kube-controller-manager signs with the cluster CA;
//   - a client is authenticated by a certificate signed by the cluster CA
//     (the API server presents its --kubelet-client-certificate), else by a
//     bearer token through a TokenReview; nothing else is accepted (401);
//   - the user is authorized by a SubjectAccessReview for the node's
//     subresource the kubelet maps the path to: `nodes/proxy` for
//     /containerLogs (verb from the method: GET is get), 403 otherwise.

// servingCertificate obtains the kubelet serving certificate for the node's
// address through the certificates API.
func (a *agent) servingCertificate(ctx context.Context) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: "system:node:" + a.cfg.NodeName, Organization: []string{"system:nodes"}},
		DNSNames:    []string{a.cfg.NodeName},
		IPAddresses: []net.IP{net.ParseIP(a.hostIP())},
	}, key)
	if err != nil {
		return nil, err
	}
	csrs := a.cs.CertificatesV1().CertificateSigningRequests()
	csr, err := csrs.Create(ctx, &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "csr-" + a.cfg.NodeName + "-serving-"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}),
			SignerName: certificatesv1.KubeletServingSignerName,
			Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create serving CSR: %w", err)
	}
	// Nothing approves kubelet serving certificates by itself; an
	// administrator (here the agent's own credentials) does.
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue,
		Reason: "NodeAgentApprove", Message: "serving certificate of node " + a.cfg.NodeName,
	})
	if _, err := csrs.UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{}); err != nil {
		return nil, fmt.Errorf("approve serving CSR %s: %w", csr.Name, err)
	}
	var certPEM []byte
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := csrs.Get(ctx, csr.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range got.Status.Conditions {
			if c.Type == certificatesv1.CertificateFailed || c.Type == certificatesv1.CertificateDenied {
				return false, fmt.Errorf("serving CSR %s: %s: %s", csr.Name, c.Reason, c.Message)
			}
		}
		certPEM = got.Status.Certificate
		return len(certPEM) > 0, nil
	})
	if err != nil {
		return nil, fmt.Errorf("wait for the serving certificate (is kube-controller-manager's csrsigning controller running?): %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	return &cert, nil
}

// startKubeletServer serves the kubelet API on the node's address until ctx
// is done.
func (a *agent) startKubeletServer(ctx context.Context) (stop func(), err error) {
	cert, err := a.servingCertificate(ctx)
	if err != nil {
		return nil, err
	}
	clientCAs := x509.NewCertPool()
	if !clientCAs.AppendCertsFromPEM(a.caPEM) {
		return nil, errors.New("kubelet API: no cluster CA to verify client certificates with")
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(a.hostIP(), strconv.Itoa(a.cfg.KubeletPort)))
	if err != nil {
		return nil, fmt.Errorf("kubelet API: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /containerLogs/{namespace}/{pod}/{container}", a.containerLogs)
	srv := &http.Server{
		Handler:           a.authenticated(mux),
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{*cert},
			ClientAuth:   tls.VerifyClientCertIfGiven,
			ClientCAs:    clientCAs,
			MinVersion:   tls.VersionTLS12,
		},
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.InfoS("Kubelet API server stopped", "err", err)
		}
	}()
	klog.InfoS("Serving the kubelet API", "address", ln.Addr().String())
	return func() {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if srv.Shutdown(shutdownCtx) != nil {
			_ = srv.Close()
		}
	}, nil
}

// authenticated authenticates and authorizes every request as the kubelet
// does (see above).
func (a *agent) authenticated(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, groups, uid, extra, ok := a.authenticate(r)
		if !ok {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		verb := map[string]string{"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[r.Method]
		// Every path the agent serves is "proxy" in the kubelet's mapping
		// (only /stats, /metrics, /logs, /checkpoint, /statusz, /flagz, and
		// with fine-grained authorization /pods, /healthz, /configz differ).
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, Groups: groups, UID: uid, Extra: extra,
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: verb, Version: "v1", Resource: "nodes", Subresource: "proxy", Name: a.cfg.NodeName,
			},
		}}
		res, err := a.cs.AuthorizationV1().SubjectAccessReviews().Create(r.Context(), sar, metav1.CreateOptions{})
		if err != nil {
			klog.InfoS("Kubelet API authorization failed", "user", user, "path", r.URL.Path, "err", err)
			http.Error(w, "Authorization error", http.StatusInternalServerError)
			return
		}
		if !res.Status.Allowed {
			klog.V(1).InfoS("Kubelet API request forbidden", "user", user, "verb", verb, "path", r.URL.Path, "reason", res.Status.Reason)
			http.Error(w, fmt.Sprintf("Forbidden (user=%s, verb=%s, resource=nodes, subresource(s)=[proxy])", user, verb), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (a *agent) authenticate(r *http.Request) (user string, groups []string, uid string, extra map[string]authorizationv1.ExtraValue, ok bool) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		c := r.TLS.VerifiedChains[0][0]
		if c.Subject.CommonName != "" {
			return c.Subject.CommonName, c.Subject.Organization, "", nil, true
		}
	}
	token, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !found || strings.TrimSpace(token) == "" {
		return "", nil, "", nil, false
	}
	tr, err := a.cs.AuthenticationV1().TokenReviews().Create(r.Context(), &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: strings.TrimSpace(token)},
	}, metav1.CreateOptions{})
	if err != nil || !tr.Status.Authenticated {
		return "", nil, "", nil, false
	}
	u := tr.Status.User
	if len(u.Extra) > 0 {
		extra = map[string]authorizationv1.ExtraValue{}
		for k, v := range u.Extra {
			extra[k] = authorizationv1.ExtraValue(v)
		}
	}
	return u.Username, u.Groups, u.UID, extra, true
}

// containerLogs serves GET /containerLogs/{namespace}/{pod}/{container}
// with the query parameters of PodLogOptions.
func (a *agent) containerLogs(w http.ResponseWriter, r *http.Request) {
	ns, name, container := r.PathValue("namespace"), r.PathValue("pod"), r.PathValue("container")
	q := r.URL.Query()
	if tail := q.Get("tail"); tail != "" {
		// The kubelet's older spelling of tailLines.
		if tail != "all" {
			q.Set("tailLines", tail)
		}
	}
	var o logOptions
	var previous bool
	var err error
	parseBool := func(key string) bool {
		if err != nil || q.Get(key) == "" {
			return false
		}
		var v bool
		v, err = strconv.ParseBool(q.Get(key))
		return v
	}
	parseInt := func(key string) *int64 {
		if err != nil || q.Get(key) == "" {
			return nil
		}
		var v int64
		if v, err = strconv.ParseInt(q.Get(key), 10, 64); err == nil && v < 0 {
			err = fmt.Errorf("%s must not be negative", key)
		}
		return &v
	}
	o.follow = parseBool("follow")
	o.timestamps = parseBool("timestamps")
	previous = parseBool("previous")
	o.tailLines = parseInt("tailLines")
	o.limitBytes = parseInt("limitBytes")
	if s := parseInt("sinceSeconds"); s != nil {
		if *s == 0 && err == nil {
			err = errors.New("sinceSeconds must be greater than 0")
		}
		o.since = time.Now().Add(-time.Duration(*s) * time.Second)
	}
	if st := q.Get("sinceTime"); st != "" && err == nil {
		if !o.since.IsZero() {
			err = errors.New("at most one of sinceTime or sinceSeconds may be specified")
		} else {
			o.since, err = time.Parse(time.RFC3339, st)
		}
	}
	if s := q.Get("stream"); s != "" && s != "All" && err == nil {
		// stdout and stderr share one file here, as with a TTY.
		err = fmt.Errorf("unable to return the given log stream: %q", s)
	}
	if o.limitBytes != nil && *o.limitBytes == 0 && err == nil {
		err = errors.New("limitBytes must be greater than 0")
	}
	if err != nil {
		http.Error(w, fmt.Sprintf(`{"message": "Invalid request: %v"}`, err), http.StatusBadRequest)
		return
	}
	pod, err := a.pods.Pods(ns).Get(name)
	if err != nil || pod.Spec.NodeName != a.cfg.NodeName {
		http.Error(w, fmt.Sprintf("pod %q does not exist", name), http.StatusNotFound)
		return
	}
	if findContainer(pod, container) == nil {
		http.Error(w, fmt.Sprintf("container %q not found in pod %q", container, name), http.StatusNotFound)
		return
	}
	dir := filepath.Join(a.cfg.StateDir, "logs", fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID), container)
	path, err := selectRun(dir, container, name, previous)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	flush := func() {
		if flusher != nil {
			flusher.Flush()
		}
	}
	flush()
	if err := streamLog(r.Context(), path, o, a.logs.done(path), w, flush); err != nil && r.Context().Err() == nil {
		klog.InfoS("Container log stream failed", "pod", klog.KObj(pod), "container", container, "err", err)
	}
}
