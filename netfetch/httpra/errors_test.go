package httpra

import (
	"strings"
	"testing"
)

// A presigned URL's signature is a credential while it lasts: errors
// leave it out, and a refusal says what to do.
func TestPresignedURLNotShown(t *testing.T) {
	u := "https://s3.lab/images/x.thaw.presigned?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=5ecret"
	for _, err := range []error{
		&StatusError{Method: "GET", URL: u, Code: 403, Status: "403 Forbidden"},
		&StatusError{Method: "GET", URL: u, Code: 404, Status: "404 Not Found"},
		&StatusError{Method: "GET", URL: u, Code: 500, Status: "500 Internal Server Error"},
		&protocolError{u, "nonsense"},
		&ChangedError{URL: u, OldSize: 1, NewSize: 2},
	} {
		if strings.Contains(err.Error(), "5ecret") {
			t.Errorf("%T shows the signature: %s", err, err)
		}
	}
	if s := (&StatusError{Method: "GET", URL: u, Code: 403}).Error(); !strings.Contains(s, "thaw presign") {
		t.Errorf("a refused presigned URL: %s", s)
	}
	if s := (&StatusError{Method: "GET", URL: "https://h/x?a=1", Code: 404}).Error(); !strings.Contains(s, "?a=1") {
		t.Errorf("an ordinary query was cut: %s", s)
	}
}
