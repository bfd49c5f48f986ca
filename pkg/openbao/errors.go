package openbao

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/openbao/openbao/api/v2"
)

// Kinds of errors; test them with errors.Is.
var (
	// ErrSealed: the server is sealed (503 on an API call).
	ErrSealed = errors.New("openbao server is sealed")
	// ErrNotInitialized: the server has not been initialized (501).
	ErrNotInitialized = errors.New("openbao server is not initialized")
	// ErrPermissionDenied: the token may not do this (403), or there is no valid token.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrLoginRefused: the auth method refused the credentials (wrong audience, subject,
	// issuer, signature or role).
	ErrLoginRefused = errors.New("login refused")
	// ErrNotFound: the path or object does not exist (404).
	ErrNotFound = errors.New("not found")
	// ErrRateLimited: the server asked to slow down (429 on an API call).
	ErrRateLimited = errors.New("rate limited")
	// ErrServer: the server failed the request (5xx that is none of the above).
	ErrServer = errors.New("openbao server error")
	// ErrBadRequest: the server refused the request as invalid (400 and other 4xx).
	ErrBadRequest = errors.New("bad request")
	// ErrUnavailable: the server could not be reached (refused, reset, timed out).
	ErrUnavailable = errors.New("openbao server unreachable")
	// ErrTLSVerification: the server's certificate is not valid for the CA and server name
	// given. Trying again does not help until the certificate or the client's CA changes.
	ErrTLSVerification = errors.New("openbao server certificate not trusted")
	// ErrUnexpectedResponse: the answer could not be understood.
	ErrUnexpectedResponse = errors.New("unexpected answer from openbao")
)

// Error is a failed call: which operation, the HTTP code if there was an answer, OpenBao's
// messages and the kind (one of the Err* values), which errors.Is matches.
type Error struct {
	Op         string
	StatusCode int
	Messages   []string
	Kind       error
	cause      error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	b.WriteString(": ")
	b.WriteString(e.Kind.Error())
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.StatusCode)
	}
	if len(e.Messages) > 0 {
		b.WriteString(": ")
		b.WriteString(strings.Join(e.Messages, "; "))
	} else if e.cause != nil {
		b.WriteString(": ")
		b.WriteString(e.cause.Error())
	}
	return b.String()
}

// Is matches the kind.
func (e *Error) Is(target error) bool { return target == e.Kind }

// Unwrap gives the underlying error (network, context), if any.
func (e *Error) Unwrap() error { return e.cause }

// classify turns an error of the api library into an *Error of a known kind.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var own *Error
	if errors.As(err, &own) {
		cp := *own
		if cp.Op == "" {
			cp.Op = op
		} else {
			cp.Op = op + ": " + cp.Op
		}
		return &cp
	}
	var re *api.ResponseError
	if errors.As(err, &re) {
		return &Error{Op: op, StatusCode: re.StatusCode, Messages: re.Errors, Kind: kindOf(re.StatusCode, re.Errors)}
	}
	if isTLSVerificationError(err) {
		return &Error{Op: op, Kind: ErrTLSVerification, cause: err}
	}
	return &Error{Op: op, Kind: ErrUnavailable, cause: err}
}

func isTLSVerificationError(err error) bool {
	var verify *tls.CertificateVerificationError
	var hostname x509.HostnameError
	var authority x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	if errors.As(err, &verify) || errors.As(err, &hostname) || errors.As(err, &authority) || errors.As(err, &invalid) {
		return true
	}
	// The api library flattens the error of a followed redirect into text.
	msg := err.Error()
	return strings.Contains(msg, "tls: failed to verify certificate") || strings.Contains(msg, "x509: certificate")
}

func kindOf(code int, messages []string) error {
	joined := strings.ToLower(strings.Join(messages, " "))
	switch {
	case code == http.StatusServiceUnavailable && strings.Contains(joined, "sealed"):
		return ErrSealed
	case code == http.StatusNotImplemented || strings.Contains(joined, "not initialized"):
		return ErrNotInitialized
	case code == http.StatusForbidden:
		return ErrPermissionDenied
	case code == http.StatusBadRequest && strings.Contains(joined, "missing client token"):
		return ErrPermissionDenied
	case code == http.StatusNotFound:
		return ErrNotFound
	case code == http.StatusTooManyRequests:
		return ErrRateLimited
	case code >= 500:
		return ErrServer
	default:
		return ErrBadRequest
	}
}

// transientServerMessages are 5xx answers that pass by themselves: a standby that has lost
// or not yet found the active node, a leadership change in progress, a request forwarding
// hiccup.
var transientServerMessages = []string{
	"local node not active but active cluster node not found",
	"node not active",
	"no active node",
	"leadership lost",
	"leadership change",
	"error forwarding",
	"failed to forward",
	"context deadline exceeded",
	"connection refused",
	"raft is not initialized",
	"not yet",
}

// IsTransient says whether trying the same call again later may succeed: the server was
// unreachable or timed out, sealed (it unseals itself with the static seal), rate limiting,
// answering 502/503/504, or a 500 known to come from a leadership change or request
// forwarding. Refusals (403, login refused, 400, 404) and other 500s (such as promoting a
// voter) are not transient. A cancelled caller context is not transient either.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	var e *Error
	if !errors.As(err, &e) {
		return !isTLSVerificationError(err) && isNetworkError(err)
	}
	switch {
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrSealed), errors.Is(err, ErrRateLimited):
		return true
	case errors.Is(err, ErrServer):
		switch e.StatusCode {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		msg := strings.ToLower(strings.Join(e.Messages, " "))
		for _, m := range transientServerMessages {
			if strings.Contains(msg, m) {
				return true
			}
		}
		return false
	default:
		return false
	}
}

func isNetworkError(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}
