// Package v1alpha1 holds the OpenBaoCluster API: the desired state of an OpenBao cluster, the
// settings of its Day-2 upgrades, and the status the operator reports back.
//
// +kubebuilder:object:generate=true
// +groupName=openbao.org
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of every type in this package.
	GroupVersion = schema.GroupVersion{Group: "openbao.org", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this package with a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this package to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(GroupVersion, &OpenBaoCluster{}, &OpenBaoClusterList{}, &OpenBaoRestore{}, &OpenBaoRestoreList{})
	metav1.AddToGroupVersion(scheme, GroupVersion)
	return nil
}
