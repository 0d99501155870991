package main

import (
	"crypto/x509"

	"github.com/thawlinux/thaw/netfetch/s3"
)

// s3Client reads the S3 settings from the environment (endpoint and
// presign endpoint flags first) and makes a client.
func s3Client(endpoint, presignEndpoint string, roots *x509.CertPool) (*s3.Client, error) {
	cfg, err := s3.FromEnv(endpoint)
	if err != nil {
		return nil, err
	}
	cfg.PresignEndpoint, cfg.Roots = presignEndpoint, roots
	return s3.New(cfg)
}
