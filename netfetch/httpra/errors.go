package httpra

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
)

// Sentinel errors; every error this package returns for these cases
// matches one of them with errors.Is.
var (
	// ErrDNS: the server's host name does not resolve.
	ErrDNS = errors.New("host name does not resolve")
	// ErrRefused: the host answered but nothing listens on the port.
	ErrRefused = errors.New("connection refused")
	// ErrTLS: the TLS handshake failed, usually on the certificate.
	ErrTLS = errors.New("TLS handshake failed")
	// ErrNotFound: HTTP 404.
	ErrNotFound = errors.New("not found")
	// ErrUnauthorized: HTTP 401 or 403, the token is missing or wrong.
	ErrUnauthorized = errors.New("token refused")
	// ErrChanged: the file on the server changed between two requests.
	ErrChanged = errors.New("file changed on the server")
	// ErrNoRange: the server ignores Range requests and the offset is too
	// far into the file to skip to.
	ErrNoRange = errors.New("server ignores Range requests")
	// ErrClosed: the ReaderAt was closed.
	ErrClosed = errors.New("httpra: reader closed")
)

// NetError is a failure to reach the server: Kind is ErrDNS, ErrRefused or
// ErrTLS. Both Kind and the underlying error match errors.Is and errors.As.
type NetError struct {
	Kind error
	Host string // host or host:port
	URL  string
	Err  error
}

func (e *NetError) Error() string {
	switch e.Kind {
	case ErrDNS:
		return fmt.Sprintf("cannot resolve host %s: %v (check the name in %s and this machine's DNS server)", e.Host, e.Err, shown(e.URL))
	case ErrRefused:
		return fmt.Sprintf("cannot connect to %s: connection refused: nothing listens on that port (is thaw serve running there, on that port?)", e.Host)
	case ErrTLS:
		hint := ""
		var ua x509.UnknownAuthorityError
		var he x509.HostnameError
		var ci x509.CertificateInvalidError
		var rh tls.RecordHeaderError
		switch {
		case errors.As(e.Err, &ua):
			hint = ": the server's certificate is not signed by an authority this machine trusts"
		case errors.As(e.Err, &he):
			hint = ": the server's certificate is for another name"
		case errors.As(e.Err, &ci):
			hint = ": the server's certificate is expired or not valid for a server"
		case errors.As(e.Err, &rh) || strings.Contains(e.Err.Error(), "HTTP response to HTTPS client"):
			hint = ": the server does not speak TLS (try http:// instead of https://)"
		}
		return fmt.Sprintf("TLS with %s failed%s: %v", e.Host, hint, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Host, e.Err)
}

// Unwrap gives both the Kind sentinel and the underlying error.
func (e *NetError) Unwrap() []error { return []error{e.Kind, e.Err} }

// StatusError is a non-2xx answer. It matches ErrNotFound for 404 and
// ErrUnauthorized for 401 and 403.
type StatusError struct {
	Method  string
	URL     string
	Code    int
	Status  string // the status line's text, e.g. "404 Not Found"
	Message string // the start of the server's body, trimmed
	NoToken bool   // the request carried no token
}

func (e *StatusError) Error() string {
	var s string
	u := shown(e.URL)
	switch {
	case (e.Code == http.StatusUnauthorized || e.Code == http.StatusForbidden) && u != e.URL:
		s = fmt.Sprintf("the store refused the presigned URL %s (HTTP %d): it may have expired; make a new one (thaw presign)", u, e.Code)
	case e.Code == http.StatusNotFound && (e.Method == http.MethodGet || e.Method == http.MethodHead):
		s = fmt.Sprintf("no bundle at %s (HTTP 404)", u)
	case e.Code == http.StatusNotFound:
		s = fmt.Sprintf("%s %s: no such place on the server (HTTP 404)", e.Method, u)
	case (e.Code == http.StatusUnauthorized || e.Code == http.StatusForbidden) && e.NoToken:
		s = fmt.Sprintf("the server wants a token (HTTP %d) and none was given: set thaw.token= / --token-file", e.Code)
	case e.Code == http.StatusUnauthorized || e.Code == http.StatusForbidden:
		s = fmt.Sprintf("the server refused the token (HTTP %d): check thaw.token= / --token-file", e.Code)
	default:
		s = fmt.Sprintf("%s %s: HTTP %s", e.Method, u, e.Status)
	}
	if e.Message != "" {
		s += "; the server says: " + e.Message
	}
	return s
}

func (e *StatusError) Unwrap() error {
	switch e.Code {
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusUnauthorized, http.StatusForbidden:
		return ErrUnauthorized
	}
	return nil
}

// shown is a URL as an error may show it: a presigned URL's query (its
// signature, a credential while it lasts) is left out.
func shown(rawURL string) string {
	if i := strings.IndexByte(rawURL, '?'); i >= 0 && strings.Contains(rawURL[i:], "X-Amz-Signature=") {
		return rawURL[:i] + "?…"
	}
	return rawURL
}

// ChangedError reports that the file at URL is no longer the one Open saw.
// Whichever of the ETag, size and Last-Modified differ are set.
type ChangedError struct {
	URL              string
	OldETag, NewETag string
	OldSize, NewSize int64 // -1 when unchanged or unknown
	OldMod, NewMod   string
}

func (e *ChangedError) Error() string {
	var what string
	switch {
	case e.OldETag != "" && e.NewETag != "" && e.OldETag != e.NewETag:
		what = fmt.Sprintf("ETag %s → %s", e.OldETag, e.NewETag)
	case e.OldSize >= 0 && e.NewSize >= 0:
		what = fmt.Sprintf("size %d → %d bytes", e.OldSize, e.NewSize)
	case e.OldMod != "" && e.NewMod != "":
		what = fmt.Sprintf("Last-Modified %s → %s", e.OldMod, e.NewMod)
	case e.OldETag != "":
		what = fmt.Sprintf("ETag %s no longer matches", e.OldETag)
	default:
		what = "validator no longer matches"
	}
	return fmt.Sprintf("the bundle at %s changed while being read (%s)", shown(e.URL), what)
}

func (e *ChangedError) Is(target error) bool { return target == ErrChanged }

// classify turns a transport error into a NetError when it is one of the
// failures an engineer can act on, and returns it unchanged otherwise.
func classify(err error, rawURL string) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	host := rawURL
	if u, perr := url.Parse(rawURL); perr == nil {
		host = u.Host
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		inner := error(errors.New(dns.Err))
		if dns.IsNotFound {
			inner = errors.New("no such host")
		}
		name := dns.Name
		if name == "" {
			name = host
		}
		return &NetError{Kind: ErrDNS, Host: name, URL: rawURL, Err: &wrapped{inner, err}}
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return &NetError{Kind: ErrRefused, Host: host, URL: rawURL, Err: err}
	}
	var (
		cv *tls.CertificateVerificationError
		ua x509.UnknownAuthorityError
		he x509.HostnameError
		ci x509.CertificateInvalidError
		rh tls.RecordHeaderError
		ae tls.AlertError
	)
	if errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) || errors.As(err, &rh) || errors.As(err, &ae) ||
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return &NetError{Kind: ErrTLS, Host: host, URL: rawURL, Err: err}
	}
	return err
}

// wrapped shows a short message but keeps the full error for errors.As.
type wrapped struct {
	short error
	full  error
}

func (w *wrapped) Error() string { return w.short.Error() }
func (w *wrapped) Unwrap() error { return w.full }

// retryable reports whether err may go away if the request is repeated.
func retryable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, ErrClosed) {
		return false
	}
	var ne *NetError
	if errors.As(err, &ne) {
		switch ne.Kind {
		case ErrTLS:
			return false
		case ErrDNS:
			var dns *net.DNSError
			return errors.As(err, &dns) && !dns.IsNotFound
		}
		return true
	}
	var se *StatusError
	if errors.As(err, &se) {
		switch se.Code {
		case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
			http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	var pe *protocolError
	var fe *finalError
	if errors.Is(err, ErrChanged) || errors.Is(err, ErrNoRange) || errors.As(err, &pe) || errors.As(err, &fe) {
		return false
	}
	// Everything else is the network: resets, cuts, timeouts, unreachable.
	return true
}

// protocolError is an answer that breaks HTTP's rules for ranges.
type protocolError struct {
	url string
	msg string
}

func (e *protocolError) Error() string {
	return fmt.Sprintf("%s: the server's answer makes no sense: %s", shown(e.url), e.msg)
}

// finalError is a failure that repeating the request would not mend.
type finalError struct{ err error }

func (e *finalError) Error() string { return e.err.Error() }
func (e *finalError) Unwrap() error { return e.err }
