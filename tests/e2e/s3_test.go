package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/openbao-operator/openbao-operator/pkg/pki"
	"github.com/openbao-operator/openbao-operator/tests/localcluster/cluster"
)

// The S3-compatible object store of the backup tests: SeaweedFS's weed with its S3 gateway,
// as a pod of the local cluster behind a Service, with TLS and access keys.
const (
	s3Name      = "s3"
	s3Port      = 8333
	s3Region    = "us-east-1"
	s3AccessKey = "openbao-backups"
	s3SecretKey = "openbao-backups-secret-key-0123456789"
	s3Bucket    = "openbao-backups"
)

// objectStore is a running S3 server in a namespace.
type objectStore struct {
	// Endpoint is the URL clusters in the namespace reach it at.
	Endpoint string
	// CAPEM signed its certificate.
	CAPEM []byte
	// CredentialsSecret and CAConfigMap hold the keys and the CA for spec.backup.target.s3.
	CredentialsSecret, CAConfigMap string
	// Client reaches the server from the test, through the pod's address.
	Client *minio.Client
}

// startObjectStore runs weed in namespace ns with a bucket for backups, and creates the
// credentials Secret and the CA ConfigMap a cluster's spec.backup.target.s3 names.
func startObjectStore(t *testing.T, ns string) *objectStore {
	t.Helper()
	ctx := context.Background()
	host := fmt.Sprintf("%s.%s.svc", s3Name, ns)
	ca, err := pki.NewCA("e2e-s3", time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.IssueServerCert(ca, pki.ServerCertRequest{
		CommonName: host, DNSNames: []string{host, host + ".cluster.local", s3Name}, Validity: 24 * time.Hour,
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	identities, _ := json.Marshal(map[string]any{"identities": []map[string]any{{
		"name":        "backups",
		"credentials": []map[string]string{{"accessKey": s3AccessKey, "secretKey": s3SecretKey}},
		"actions":     []string{"Admin", "Read", "Write", "List", "Tagging"},
	}}})
	create := func(obj interface{ GetName() string }, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("create %s: %v", obj.GetName(), err)
		}
	}
	create(cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: s3Name + "-server"},
		Data:       map[string][]byte{"tls.crt": cert.CertPEM, "tls.key": cert.KeyPEM, "identities.json": identities},
	}, metav1.CreateOptions{}))
	store := &objectStore{
		Endpoint: fmt.Sprintf("https://%s:%d", host, s3Port), CAPEM: ca.CertPEM,
		CredentialsSecret: s3Name + "-credentials", CAConfigMap: s3Name + "-ca",
	}
	create(cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: store.CredentialsSecret},
		StringData: map[string]string{"AWS_ACCESS_KEY_ID": s3AccessKey, "AWS_SECRET_ACCESS_KEY": s3SecretKey},
	}, metav1.CreateOptions{}))
	create(cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: store.CAConfigMap},
		Data:       map[string]string{"ca.crt": string(ca.CertPEM)},
	}, metav1.CreateOptions{}))

	labels := map[string]string{"app.kubernetes.io/name": s3Name}
	create(cs.CoreV1().Pods(ns).Create(ctx, objectStorePod(labels), metav1.CreateOptions{}))
	create(cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: s3Name},
		// Headless: the local cluster has no service proxy, its DNS answers with the pod's address.
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: labels, Ports: []corev1.ServicePort{{
			Name: "s3", Port: s3Port, TargetPort: intstr.FromInt32(s3Port),
		}}},
	}, metav1.CreateOptions{}))

	var podIP string
	eventually(t, waitShort, "the S3 server pod running", func() (bool, string) {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, s3Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		podIP = p.Status.PodIP
		return p.Status.Phase == corev1.PodRunning && podIP != "", string(p.Status.Phase)
	})
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.TLSClientConfig = &tls.Config{RootCAs: roots, ServerName: host, MinVersion: tls.VersionTLS12}
	store.Client, err = minio.New(fmt.Sprintf("%s:%d", podIP, s3Port), &minio.Options{
		Creds: credentials.NewStaticV4(s3AccessKey, s3SecretKey, ""), Secure: true,
		Region: s3Region, BucketLookup: minio.BucketLookupPath, Transport: tr,
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, waitShort, "the bucket "+s3Bucket+" created on the S3 server", func() (bool, string) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		err := store.Client.MakeBucket(cctx, s3Bucket, minio.MakeBucketOptions{Region: s3Region})
		if err != nil {
			if exists, _ := store.Client.BucketExists(cctx, s3Bucket); exists {
				return true, ""
			}
			return false, err.Error()
		}
		return true, ""
	})
	return store
}

// objectStorePod runs `weed server -s3` as a non-root user with its data on an emptyDir.
// Its master, volume server and filer talk over the pod's loopback and Unix sockets in /tmp; the S3 gateway listens
// on every address.
func objectStorePod(labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: s3Name, Labels: labels},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken: ptr.To(false),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](1000), RunAsGroup: ptr.To[int64](1000),
				FSGroup: ptr.To[int64](1000), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name:  "weed",
				Image: cluster.SeaweedFSImage,
				Args: []string{"server",
					"-dir=/data", "-ip=127.0.0.1", "-ip.bind=0.0.0.0",
					"-master.volumeSizeLimitMB=256",
					"-s3", fmt.Sprintf("-s3.port=%d", s3Port), "-s3.port.iceberg=0", "-s3.port.lance=0",
					"-s3.cert.file=/etc/s3/tls.crt", "-s3.key.file=/etc/s3/tls.key", "-s3.config=/etc/s3/identities.json",
				},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "data", MountPath: "/data"},
					{Name: "tmp", MountPath: "/tmp"}, // its servers talk over Unix sockets there
					{Name: "config", MountPath: "/etc/s3", ReadOnly: true},
				},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
					TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(s3Port)},
				}},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
			Volumes: []corev1.Volume{
				{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "config", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: s3Name + "-server"}}},
			},
		},
	}
}
