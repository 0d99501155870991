package s3

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Config says how to reach a bucket.
type Config struct {
	// Endpoint is scheme://host[:port] of the S3 API; empty: AWS S3 in
	// Region.
	Endpoint string
	// PresignEndpoint, if set, is the endpoint as the restoring machine
	// reaches it (another name or address, behind NAT): presigned URLs
	// are signed for its host, which SigV4 binds them to.
	PresignEndpoint string
	Region          string
	AccessKey       string
	SecretKey       string
	SessionToken    string
	// Roots are the CAs for https; nil: the system's.
	Roots *x509.CertPool
}

// ErrNoCredentials means no access key was found anywhere.
var ErrNoCredentials = errors.New("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile in ~/.aws/credentials (AWS_PROFILE)")

// FromEnv reads the usual places: the endpoint from endpoint (a flag)
// or AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL; the region from AWS_REGION
// or AWS_DEFAULT_REGION (default us-east-1); the credentials from
// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, else
// from ~/.aws/credentials (AWS_SHARED_CREDENTIALS_FILE, AWS_PROFILE).
func FromEnv(endpoint string) (Config, error) {
	c := Config{Endpoint: endpoint}
	for _, v := range []string{"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"} {
		if c.Endpoint == "" {
			c.Endpoint = os.Getenv(v)
		}
	}
	for _, v := range []string{"AWS_REGION", "AWS_DEFAULT_REGION"} {
		if c.Region == "" {
			c.Region = os.Getenv(v)
		}
	}
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	for _, p := range []credentials.Provider{&credentials.EnvAWS{}, &credentials.FileAWSCredentials{}} {
		v, err := p.RetrieveWithCredContext(&credentials.CredContext{})
		if err == nil && v.AccessKeyID != "" && v.SecretAccessKey != "" {
			c.AccessKey, c.SecretKey, c.SessionToken = v.AccessKeyID, v.SecretAccessKey, v.SessionToken
			break
		}
	}
	if c.AccessKey == "" {
		return c, ErrNoCredentials
	}
	return c, nil
}

// endpointURL is the endpoint as a URL with no path.
func endpointURL(e, region string) (*url.URL, error) {
	if e == "" {
		e = "https://s3." + region + ".amazonaws.com"
	}
	u, err := url.Parse(e)
	if err != nil {
		return nil, fmt.Errorf("S3 endpoint %q: %w", e, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" {
		return nil, fmt.Errorf("S3 endpoint %q: want http(s)://HOST[:PORT], no path", e)
	}
	u.Path = ""
	return u, nil
}
