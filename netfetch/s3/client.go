package s3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
	"github.com/minio/minio-go/v7/pkg/signer"
)

// Client talks to one S3 endpoint.
type Client struct {
	cfg      Config
	endpoint *url.URL
	presign  *url.URL
	mc       *minio.Client
}

// New checks cfg and makes a client; it sends nothing.
func New(cfg Config) (*Client, error) {
	ep, err := endpointURL(cfg.Endpoint, cfg.Region)
	if err != nil {
		return nil, err
	}
	ps := ep
	if cfg.PresignEndpoint != "" {
		if ps, err = endpointURL(cfg.PresignEndpoint, cfg.Region); err != nil {
			return nil, err
		}
	}
	tr := &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: &tls.Config{RootCAs: cfg.Roots, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second, ResponseHeaderTimeout: 2 * time.Minute}
	mc, err := minio.New(ep.Host, &minio.Options{Creds: credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken),
		Secure: ep.Scheme == "https", Transport: tr, Region: cfg.Region, BucketLookup: minio.BucketLookupPath})
	if err != nil {
		return nil, fmt.Errorf("S3 client for %s: %w", ep, err)
	}
	return &Client{cfg: cfg, endpoint: ep, presign: ps, mc: mc}, nil
}

// Endpoint is the endpoint requests go to.
func (c *Client) Endpoint() *url.URL { u := *c.endpoint; return &u }

// objectURL is the path-style URL of o on base.
func objectURL(base *url.URL, o Object) *url.URL {
	u := *base
	u.Path = "/" + o.Bucket + "/" + o.Key
	u.RawPath = s3utils.EncodePath(u.Path)
	return &u
}

// Chunks lists the chunks beside the bundle object o (by the sha256 of
// their stored bytes).
func (c *Client) Chunks(ctx context.Context, o Object) (map[string]bool, error) {
	have := map[string]bool{}
	prefix := o.Dir() + "chunks/"
	for obj := range c.mc.ListObjects(ctx, o.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("list %s%s: %w", Scheme+o.Bucket+"/", prefix, explain(obj.Err))
		}
		if sum, ok := chunkName(strings.TrimPrefix(obj.Key, prefix)); ok {
			have[sum] = true
		}
	}
	return have, nil
}

// chunkName takes "ab/abcd…" (64 hex digits) to its sum.
func chunkName(rel string) (string, bool) {
	dir, sum, ok := strings.Cut(rel, "/")
	if !ok || len(sum) != 64 || dir != sum[:2] {
		return "", false
	}
	for _, c := range sum {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", false
		}
	}
	return sum, true
}

// Put stores size bytes from r as o.
func (c *Client) Put(ctx context.Context, o Object, r io.Reader, size int64) error {
	if _, err := c.mc.PutObject(ctx, o.Bucket, o.Key, r, size, minio.PutObjectOptions{ContentType: "application/octet-stream"}); err != nil {
		return fmt.Errorf("put %s: %w", o, explain(err))
	}
	return nil
}

// Get opens o for reading; the object is an io.ReaderAt with Stat.
func (c *Client) Get(ctx context.Context, o Object) (*minio.Object, int64, error) {
	obj, err := c.mc.GetObject(ctx, o.Bucket, o.Key, minio.GetObjectOptions{})
	if err != nil {
		return nil, 0, fmt.Errorf("get %s: %w", o, explain(err))
	}
	st, err := obj.Stat()
	if err != nil {
		obj.Close()
		return nil, 0, fmt.Errorf("get %s: %w", o, explain(err))
	}
	return obj, st.Size, nil
}

// Remove deletes o.
func (c *Client) Remove(ctx context.Context, o Object) error {
	if err := c.mc.RemoveObject(ctx, o.Bucket, o.Key, minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("delete %s: %w", o, explain(err))
	}
	return nil
}

// Info is an object as a listing shows it.
type Info struct {
	Object
	Size     int64
	Modified time.Time
}

// List lists the objects under a prefix of a bucket.
func (c *Client) List(ctx context.Context, bucket, prefix string) ([]Info, error) {
	var out []Info
	for obj := range c.mc.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("list %s%s/%s: %w", Scheme, bucket, prefix, explain(obj.Err))
		}
		out = append(out, Info{Object: Object{Bucket: bucket, Key: obj.Key}, Size: obj.Size, Modified: obj.LastModified})
	}
	return out, nil
}

// MaxExpiry is the longest a presigned URL can live (SigV4's limit).
const MaxExpiry = 7 * 24 * time.Hour

// Presign makes a GET URL for o that holds its own signature, valid for
// expires, on the presign endpoint. It sends nothing.
func (c *Client) Presign(o Object, expires time.Duration) (string, error) {
	if expires <= 0 || expires > MaxExpiry {
		return "", fmt.Errorf("presigned URL lifetime %v: want more than 0 and at most %v", expires, MaxExpiry)
	}
	req, err := http.NewRequest(http.MethodGet, objectURL(c.presign, o).String(), nil)
	if err != nil {
		return "", err
	}
	return signer.PreSignV4(*req, c.cfg.AccessKey, c.cfg.SecretKey, c.cfg.SessionToken, c.cfg.Region, int64(expires/time.Second)).URL.String(), nil
}

// SignPut signs a PUT of size bytes whose SHA-256 is sum (hex) as o. The
// caller writes the request line "PUT RequestURI HTTP/1.1", Host,
// Content-Length and the headers of the request returned, then the body.
func (c *Client) SignPut(o Object, sum string, size int64) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodPut, objectURL(c.endpoint, o).String(), nil)
	if err != nil {
		return nil, err
	}
	req.ContentLength = size
	req.Header.Set("X-Amz-Content-Sha256", sum)
	req.Header.Set("Content-Type", "application/octet-stream")
	return signer.SignV4(*req, c.cfg.AccessKey, c.cfg.SecretKey, c.cfg.SessionToken, c.cfg.Region), nil
}

// explain adds the fix to the errors an operator meets first.
func explain(err error) error {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		switch er.Code {
		case "NoSuchBucket":
			return fmt.Errorf("%w (make the bucket first)", err)
		case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch":
			return fmt.Errorf("%w (check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION)", err)
		}
	}
	return err
}
