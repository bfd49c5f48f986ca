// Package resources builds the Kubernetes objects of an OpenBao cluster from its spec. Every
// function here is pure: the same cluster gives the same objects, so the controller can
// compare what it builds with what exists and write only when they differ.
package resources

import (
	"fmt"
	"strings"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
)

// Labels and annotations the operator puts on what it creates.
const (
	LabelName      = "app.kubernetes.io/name"
	LabelInstance  = "app.kubernetes.io/instance"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelComponent = "app.kubernetes.io/component"
	// LabelCluster selects every object of one OpenBaoCluster.
	LabelCluster = "openbao.org/cluster"
	// LabelStatefulSet tells apart the server pods of two StatefulSets of one cluster
	// (Blue and Green during a BlueGreen upgrade).
	LabelStatefulSet = "openbao.org/statefulset"

	AppName         = "openbao"
	ManagedBy       = "openbao-operator"
	ComponentServer = "server"
	ComponentJob    = "upgrade-job"

	// AnnotationConfigHash on the pod template changes when the rendered configuration or
	// the certificates change, so that the StatefulSet sees a new revision; the partition keeps
	// pods from rolling until an upgrade moves them.
	AnnotationConfigHash = "openbao.org/config-hash"
)

// Ports and paths inside the OpenBao pods.
const (
	APIPort     = 8200
	ClusterPort = 8201

	ConfigDir   = "/openbao/config"
	ConfigFile  = "openbao.hcl"
	TLSDir      = "/openbao/tls"
	SealDir     = "/openbao/seal"
	SealKeyFile = "key"
	DataDir     = "/openbao/data"

	// SealKeyID names the static seal key. A later key rotation would add a new ID.
	SealKeyID = "operator-1"

	// DefaultImageRepository is the official OpenBao image.
	DefaultImageRepository = "quay.io/openbao/openbao"

	// ClusterDomain is the DNS domain of the Kubernetes cluster.
	ClusterDomain = "cluster.local"
)

// Names are the names of everything the operator creates for a cluster.
type Names struct {
	StatefulSet           string
	HeadlessService       string
	ClientService         string
	ConfigMap             string
	SealSecret            string
	CASecret              string
	TLSSecret             string
	ServiceAccount        string
	UpgradeServiceAccount string
	PodDisruptionBudget   string
}

// NamesFor returns the names of a cluster's objects. StatefulSet and ConfigMap are those of
// the StatefulSet that serves the cluster (status.statefulSet).
func NamesFor(c *openbaov1alpha1.OpenBaoCluster) Names {
	n := c.Name
	sts := ActiveStatefulSet(c)
	return Names{
		StatefulSet:           sts,
		HeadlessService:       n + "-internal",
		ClientService:         n,
		ConfigMap:             ConfigMapName(sts),
		SealSecret:            n + "-unseal-key",
		CASecret:              n + "-ca",
		TLSSecret:             n + "-tls",
		ServiceAccount:        n,
		UpgradeServiceAccount: n + upgradeServiceAccountSuffix,
		PodDisruptionBudget:   n,
	}
}

// ActiveStatefulSet is the StatefulSet whose pods serve the cluster.
func ActiveStatefulSet(c *openbaov1alpha1.OpenBaoCluster) string {
	if c.Status.StatefulSet != "" {
		return c.Status.StatefulSet
	}
	return c.Name
}

// ConfigMapName is the configuration of one StatefulSet's servers.
func ConfigMapName(statefulSet string) string { return statefulSet + "-config" }

// StatefulSetSelector selects the pods of one of a cluster's StatefulSets.
func StatefulSetSelector(c *openbaov1alpha1.OpenBaoCluster, statefulSet string) map[string]string {
	l := SelectorLabels(c)
	l[LabelStatefulSet] = statefulSet
	return l
}

// SelectorLabels select the server pods of a cluster, of every StatefulSet.
func SelectorLabels(c *openbaov1alpha1.OpenBaoCluster) map[string]string {
	return map[string]string{
		LabelName:      AppName,
		LabelInstance:  c.Name,
		LabelComponent: ComponentServer,
	}
}

// Labels are put on every object of a cluster.
func Labels(c *openbaov1alpha1.OpenBaoCluster, component string) map[string]string {
	return map[string]string{
		LabelName:      AppName,
		LabelInstance:  c.Name,
		LabelManagedBy: ManagedBy,
		LabelComponent: component,
		LabelCluster:   c.Name,
	}
}

// PodName is the name of the pod with this ordinal in the StatefulSet.
func PodName(statefulSet string, ordinal int) string {
	return fmt.Sprintf("%s-%d", statefulSet, ordinal)
}

// PodDNSName is the stable DNS name of a server pod through the headless Service. It is
// also the TLS server name the operator verifies when it talks to the pod by IP.
func PodDNSName(c *openbaov1alpha1.OpenBaoCluster, pod string) string {
	return fmt.Sprintf("%s.%s.%s.svc", pod, NamesFor(c).HeadlessService, c.Namespace)
}

// ServerDNSNames are the names the server certificate must be valid for: the client
// Service, the headless Service and every pod behind it, short and fully qualified.
func ServerDNSNames(c *openbaov1alpha1.OpenBaoCluster) []string {
	names := NamesFor(c)
	ns := c.Namespace
	out := []string{"localhost"}
	for _, svc := range []string{names.ClientService, names.HeadlessService} {
		out = append(out,
			svc,
			svc+"."+ns,
			svc+"."+ns+".svc",
			svc+"."+ns+".svc."+ClusterDomain,
		)
	}
	out = append(out,
		"*."+names.HeadlessService+"."+ns+".svc",
		"*."+names.HeadlessService+"."+ns+".svc."+ClusterDomain,
	)
	return out
}

// DefaultImage is the official image of an OpenBao version.
func DefaultImage(repository, version string) string {
	if repository == "" {
		repository = DefaultImageRepository
	}
	return repository + ":" + strings.TrimPrefix(version, "v")
}

// DesiredImage is the image the spec asks for.
func DesiredImage(c *openbaov1alpha1.OpenBaoCluster, repository string) string {
	if c.Spec.Image != "" {
		return c.Spec.Image
	}
	return DefaultImage(repository, c.Spec.Version)
}

// upgradeServiceAccountSuffix ends the name of every cluster's Job service account.
const upgradeServiceAccountSuffix = "-upgrade-serviceaccount"
