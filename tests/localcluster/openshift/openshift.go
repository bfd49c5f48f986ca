// Package openshift emulates, on the local cluster, the part of OpenShift that decides the
// user and group IDs of pods: the security.openshift.io API group in discovery (how
// operators detect OpenShift) and the ID rules of the restricted-v2
// SecurityContextConstraints, as admission policies of the real kube-apiserver. Nothing in
// the operator knows about it: the operator sees an API group and an admission chain, as
// on OpenShift.
package openshift

import _ "embed"

// Annotations that OpenShift writes on every project: the ranges restricted-v2 assigns
// from, "<first>/<size>".
const (
	UIDRangeAnnotation           = "openshift.io/sa.scc.uid-range"
	SupplementalGroupsAnnotation = "openshift.io/sa.scc.supplemental-groups"
)

// SecurityGroup is the API group the emulation serves in discovery.
const SecurityGroup = "security.openshift.io"

// CRDManifest is a CustomResourceDefinition of SecurityContextConstraints, enough for the
// API server to list security.openshift.io/v1 in discovery.
//
//go:embed scc-crd.yaml
var CRDManifest []byte

// AdmissionManifest holds the admission policies and their bindings: a
// MutatingAdmissionPolicy that fills unset runAsUser and fsGroup from the namespace's
// ranges, and a ValidatingAdmissionPolicy that rejects pods whose IDs fall outside them.
//
//go:embed scc-admission.yaml
var AdmissionManifest []byte

// APIServerFlags let kube-apiserver 1.35 serve MutatingAdmissionPolicy (beta, off by
// default). They change nothing until a policy is created.
var APIServerFlags = []string{
	"--feature-gates=MutatingAdmissionPolicy=true",
	"--runtime-config=admissionregistration.k8s.io/v1beta1=true",
}
