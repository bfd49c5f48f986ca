package backup

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/tags"
)

// PartSize is the size of each part of a multipart upload, and so the memory a backup
// holds at once. A snapshot may have 10000 parts: 160 GiB.
const PartSize = 16 << 20

// Object tags recorded with each snapshot.
const (
	TagSHA256 = "sha256"
	TagSize   = "size"
)

// S3Config is an S3-compatible bucket.
type S3Config struct {
	// Endpoint is an http(s) URL without a path.
	Endpoint  string
	Bucket    string
	Region    string
	PathStyle bool
	// Prefix is the full prefix of the cluster's objects (see ObjectPrefix).
	Prefix          string
	AccessKeyID     string
	SecretAccessKey string
	// CAPEM, when set, replaces the system's CAs.
	CAPEM []byte
}

// S3 writes backups as objects. A snapshot is sent as a multipart upload of unknown size,
// which the server only shows under its name once it is completed; a failure aborts it.
// The size and the SHA-256 are then set as the object's tags.
type S3 struct {
	cfg    S3Config
	client *minio.Client
}

var _ Target = (*S3)(nil)

// NewS3 builds the client; it does not contact the server.
func NewS3(cfg S3Config) (*S3, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || strings.Trim(u.Path, "/") != "" {
		return nil, fmt.Errorf("the S3 endpoint %q is not an http(s) URL without a path", cfg.Endpoint)
	}
	if cfg.Bucket == "" {
		return nil, errors.New("no S3 bucket")
	}
	if cfg.AccessKeyID == "" || cfg.SecretAccessKey == "" {
		return nil, errors.New("no S3 credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if len(cfg.CAPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(cfg.CAPEM) {
			return nil, errors.New("the S3 CA bundle holds no PEM certificate")
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	lookup := minio.BucketLookupDNS
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	region := cfg.Region
	if region == "" {
		region = "us-east-1"
	}
	cl, err := minio.New(u.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKeyID, cfg.SecretAccessKey, ""),
		Secure:       u.Scheme == "https",
		Region:       region,
		BucketLookup: lookup,
		Transport:    tr,
	})
	if err != nil {
		return nil, fmt.Errorf("S3 client for %s: %w", cfg.Endpoint, err)
	}
	return &S3{cfg: cfg, client: cl}, nil
}

// Put implements Target.
func (s *S3) Put(ctx context.Context, name string, r io.Reader, sum func() Sum) error {
	key := s.cfg.Prefix + name
	if _, err := s.client.PutObject(ctx, s.cfg.Bucket, key, r, -1, minio.PutObjectOptions{
		ContentType: "application/octet-stream",
		PartSize:    PartSize,
	}); err != nil {
		return fmt.Errorf("upload %s: %w", s.Location(name), err)
	}
	su := sum()
	t, err := tags.NewTags(map[string]string{TagSHA256: su.SHA256, TagSize: strconv.FormatInt(su.Size, 10)}, true)
	if err == nil {
		err = s.client.PutObjectTagging(ctx, s.cfg.Bucket, key, t, minio.PutObjectTaggingOptions{})
	}
	if err != nil {
		// Every snapshot under a final name carries its checksum: take it back.
		rmErr := s.client.RemoveObject(ctx, s.cfg.Bucket, key, minio.RemoveObjectOptions{})
		return errors.Join(fmt.Errorf("tag %s with its size and SHA-256: %w", s.Location(name), err), rmErr)
	}
	return nil
}

// List implements Target.
func (s *S3) List(ctx context.Context, cluster string) ([]Item, error) {
	var out []Item
	for o := range s.client.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: s.cfg.Prefix}) {
		if o.Err != nil {
			return nil, fmt.Errorf("list s3://%s/%s: %w", s.cfg.Bucket, s.cfg.Prefix, o.Err)
		}
		name := strings.TrimPrefix(o.Key, s.cfg.Prefix)
		if strings.Contains(name, "/") {
			continue
		}
		if t, ok := ParseSnapshotName(cluster, name); ok {
			out = append(out, Item{Name: name, Time: t})
		}
	}
	return out, nil
}

// Delete implements Target.
func (s *S3) Delete(ctx context.Context, name string) error {
	if err := s.client.RemoveObject(ctx, s.cfg.Bucket, s.cfg.Prefix+name, minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("delete %s: %w", s.Location(name), err)
	}
	return nil
}

// Location implements Target.
func (s *S3) Location(name string) string {
	return "s3://" + s.cfg.Bucket + "/" + s.cfg.Prefix + name
}

// Client is the underlying client, for tests that look at the bucket.
func (s *S3) Client() *minio.Client { return s.client }

// Object is one version of a snapshot object, as a restore reads it.
type Object struct {
	Key       string
	ETag      string
	VersionID string
	Size      int64
	// SHA256 is the object's sha256 tag; empty when it has none.
	SHA256 string
}

// ErrObjectNotFound: the bucket or the object does not exist.
var ErrObjectNotFound = errors.New("no such object")

// StatSnapshot reads the object's ETag, version and size, and the SHA-256 recorded with it
// by Put (its tag).
func (s *S3) StatSnapshot(ctx context.Context, key string) (Object, error) {
	loc := "s3://" + s.cfg.Bucket + "/" + key
	info, err := s.client.StatObject(ctx, s.cfg.Bucket, key, minio.StatObjectOptions{})
	if err != nil {
		if c := minio.ToErrorResponse(err).Code; c == "NoSuchKey" || c == "NoSuchBucket" || c == "NotFound" {
			return Object{}, fmt.Errorf("%s: %w", loc, ErrObjectNotFound)
		}
		return Object{}, fmt.Errorf("stat %s: %w", loc, err)
	}
	o := Object{Key: key, ETag: info.ETag, VersionID: info.VersionID, Size: info.Size}
	t, err := s.client.GetObjectTagging(ctx, s.cfg.Bucket, key, minio.GetObjectTaggingOptions{VersionID: info.VersionID})
	if err != nil {
		return Object{}, fmt.Errorf("read the tags of %s: %w", loc, err)
	}
	o.SHA256 = t.ToMap()[TagSHA256]
	return o, nil
}

// OpenSnapshot streams exactly the object version o describes: the request names its
// version (on a versioned bucket) and asks for its ETag, so that an object replaced since
// StatSnapshot is refused (ErrObjectChanged) instead of read.
func (s *S3) OpenSnapshot(ctx context.Context, o Object) (io.ReadCloser, error) {
	loc := "s3://" + s.cfg.Bucket + "/" + o.Key
	opts := minio.GetObjectOptions{VersionID: o.VersionID}
	if err := opts.SetMatchETag(o.ETag); err != nil {
		return nil, fmt.Errorf("open %s: %w", loc, err)
	}
	obj, err := s.client.GetObject(ctx, s.cfg.Bucket, o.Key, opts)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", loc, err)
	}
	// GetObject sends nothing until the first read or Stat: Stat makes the request now.
	if _, err := obj.Stat(); err != nil {
		_ = obj.Close()
		switch minio.ToErrorResponse(err).Code {
		case "PreconditionFailed":
			return nil, fmt.Errorf("%s: %w", loc, ErrObjectChanged)
		case "NoSuchKey", "NoSuchVersion", "NoSuchBucket", "NotFound":
			return nil, fmt.Errorf("%s: %w", loc, ErrObjectNotFound)
		}
		return nil, fmt.Errorf("open %s: %w", loc, err)
	}
	return obj, nil
}

// ErrObjectChanged: the object is not the version read before.
var ErrObjectChanged = errors.New("the object changed since it was checked")
