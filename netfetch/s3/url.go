package s3

import (
	"fmt"
	"path"
	"strings"
)

// Scheme starts an S3 URL.
const Scheme = "s3://"

// IsURL reports whether ref is an s3:// URL.
func IsURL(ref string) bool { return strings.HasPrefix(ref, Scheme) }

// Object names an object: a bundle object's key, or a chunk's.
type Object struct {
	Bucket, Key string
}

// Parse reads s3://BUCKET/KEY. A KEY that is empty or ends in "/" is a
// prefix: def (a bundle's file name) is put after it.
func Parse(ref, def string) (Object, error) {
	rest, ok := strings.CutPrefix(ref, Scheme)
	if !ok {
		return Object{}, fmt.Errorf("%s: not an s3:// URL", ref)
	}
	bucket, key, _ := strings.Cut(rest, "/")
	if !validBucket(bucket) {
		return Object{}, fmt.Errorf("%s: bucket %q: want 3 to 63 lower-case letters, digits, dots and hyphens", ref, bucket)
	}
	if key == "" || strings.HasSuffix(key, "/") {
		if def == "" {
			return Object{}, fmt.Errorf("%s: names a prefix, not an object", ref)
		}
		key += def
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return Object{}, fmt.Errorf("%s: key %q has an empty, . or .. segment", ref, key)
		}
	}
	if strings.ContainsAny(key, "?#\x00") || len(key) > 1024 {
		return Object{}, fmt.Errorf("%s: key %q: no ?, # or NUL, at most 1024 bytes", ref, key)
	}
	return Object{Bucket: bucket, Key: key}, nil
}

func validBucket(b string) bool {
	if len(b) < 3 || len(b) > 63 {
		return false
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func (o Object) String() string { return Scheme + o.Bucket + "/" + o.Key }

// Dir is the prefix of the object's directory: "" or "a/b/".
func (o Object) Dir() string {
	d := path.Dir(o.Key)
	if d == "." {
		return ""
	}
	return d + "/"
}

// Chunk is the object of a chunk beside the bundle object o.
func (o Object) Chunk(sum string) Object {
	return Object{Bucket: o.Bucket, Key: o.Dir() + "chunks/" + sum[:2] + "/" + sum}
}

// Sibling is the object NAME beside o.
func (o Object) Sibling(name string) Object {
	return Object{Bucket: o.Bucket, Key: o.Dir() + name}
}
